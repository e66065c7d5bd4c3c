// Reads a recipients CSV in the browser: a `phone` column, every other column a variable.

/** Splits one CSV line (RFC 4180 quotes, `,` or `;`). */
function cells(line: string, sep: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') (cur += '"'), i++;
      else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === sep) out.push(cur), (cur = "");
    else cur += ch;
  }
  out.push(cur);
  return out.map((c) => c.trim());
}

export interface CsvRecipient {
  phone: string;
  vars?: Record<string, string>;
}

export function parseRecipientsCsv(text: string): { recipients: CsvRecipient[]; error?: string } {
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/).filter((l) => l.trim() !== "");
  if (lines.length === 0) return { recipients: [], error: "the file is empty" };
  const sep = lines[0].includes(";") && !lines[0].includes(",") ? ";" : ",";
  const header = cells(lines[0], sep).map((h) => h.toLowerCase());
  const phoneAt = header.indexOf("phone");
  if (phoneAt < 0) return { recipients: [], error: "the file has no phone column" };
  const recipients = lines.slice(1).map((line) => {
    const row = cells(line, sep);
    const vars: Record<string, string> = {};
    header.forEach((h, i) => {
      if (i !== phoneAt && h && row[i] !== undefined && row[i] !== "") vars[h] = row[i];
    });
    return Object.keys(vars).length ? { phone: row[phoneAt] ?? "", vars } : { phone: row[phoneAt] ?? "" };
  });
  return { recipients };
}

/** The pasted list: one phone per line, blank lines ignored. */
export function parsePhones(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter(Boolean);
}
