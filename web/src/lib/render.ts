// A client-side approximation of how Herald fills a template's variables (`{{ name }}`), for the
// preview only: Herald renders the real message (docs/decisions/0003).

/** `name=Sari` lines → `{ name: "Sari" }`. */
export function parseVars(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const at = line.indexOf("=");
    if (at > 0) out[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return out;
}

/** Replaces `{{ var }}` with its sample value; unknown variables stay visible as `{{ var }}`. */
export function renderTemplate(body: string, vars: Record<string, string>): string {
  return body.replace(/\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\}\}/g, (whole, name: string) => vars[name] ?? whole);
}
