// English and Bahasa Indonesia: one dictionary, keys are the English text's short names.
import { createContext, useContext, useState, type ReactNode } from "react";
import { en, id, type Key } from "./messages";

export type Lang = "en" | "id";
const dictionaries: Record<Lang, Record<Key, string>> = { en, id };

interface I18n {
  lang: Lang;
  setLang: (l: Lang) => void;
  t: (key: Key, vars?: Record<string, string | number>) => string;
}

const Ctx = createContext<I18n | null>(null);

function initialLang(): Lang {
  // the language is a preference, not a secret: it may outlive the tab
  const saved = localStorage.getItem("herald.lang");
  if (saved === "en" || saved === "id") return saved;
  return navigator.language?.startsWith("id") ? "id" : "en";
}

export function translate(lang: Lang, key: Key, vars?: Record<string, string | number>): string {
  let text = dictionaries[lang][key] ?? en[key] ?? key;
  for (const [k, v] of Object.entries(vars ?? {})) text = text.replaceAll(`{${k}}`, String(v));
  return text;
}

export function I18nProvider({ children, lang: fixed }: { children: ReactNode; lang?: Lang }) {
  const [lang, setLangState] = useState<Lang>(fixed ?? initialLang());
  // screen readers, the browser's date formats and `when()` follow the chosen language
  document.documentElement.lang = lang;
  const setLang = (l: Lang) => {
    localStorage.setItem("herald.lang", l);
    document.documentElement.lang = l;
    setLangState(l);
  };
  return <Ctx.Provider value={{ lang, setLang, t: (k, v) => translate(lang, k, v) }}>{children}</Ctx.Provider>;
}

export function useT(): I18n {
  const ctx = useContext(Ctx);
  if (!ctx) throw new Error("useT outside I18nProvider");
  return ctx;
}
