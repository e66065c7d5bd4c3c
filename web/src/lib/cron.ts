// A 5-field cron (minute hour day-of-month month day-of-week) explained and its next runs, in the
// browser's time: an approximation for the form; Herald computes the real schedule in the
// campaign's time zone.

function expand(field: string, min: number, max: number): Set<number> | null {
  const out = new Set<number>();
  for (const part of field.split(",")) {
    const [range, stepText] = part.split("/");
    const step = stepText ? Number(stepText) : 1;
    if (!Number.isInteger(step) || step < 1) return null;
    let lo = min;
    let hi = max;
    if (range !== "*") {
      const [a, b] = range.split("-");
      lo = Number(a);
      hi = b === undefined ? (stepText ? max : lo) : Number(b);
    }
    if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < min || hi > max || lo > hi) return null;
    for (let v = lo; v <= hi; v += step) out.add(v);
  }
  return out;
}

const DAYS: Record<string, string> = { SUN: "0", MON: "1", TUE: "2", WED: "3", THU: "4", FRI: "5", SAT: "6" };

export interface Cron {
  minutes: Set<number>;
  hours: Set<number>;
  days: Set<number>;
  months: Set<number>;
  weekdays: Set<number>;
  anyDay: boolean;
  anyWeekday: boolean;
}

export function parseCron(text: string): Cron | null {
  const f = text.trim().toUpperCase().split(/\s+/);
  if (f.length !== 5) return null;
  const wd = f[4].replace(/SUN|MON|TUE|WED|THU|FRI|SAT/g, (d) => DAYS[d]).replace(/7/g, "0");
  const parts = [expand(f[0], 0, 59), expand(f[1], 0, 23), expand(f[2], 1, 31), expand(f[3], 1, 12), expand(wd, 0, 6)];
  if (parts.some((p) => p === null)) return null;
  const [minutes, hours, days, months, weekdays] = parts as Set<number>[];
  return { minutes, hours, days, months, weekdays, anyDay: f[2] === "*", anyWeekday: f[4] === "*" };
}

/** The next `n` runs after `from` (minute precision, searched up to a year ahead). */
export function nextRuns(cron: Cron, from: Date, n = 3): Date[] {
  const out: Date[] = [];
  const d = new Date(from);
  d.setSeconds(0, 0);
  d.setMinutes(d.getMinutes() + 1);
  const limit = from.getTime() + 366 * 86_400_000;
  while (out.length < n && d.getTime() < limit) {
    const dayOk =
      cron.anyDay && cron.anyWeekday
        ? true
        : cron.anyDay
          ? cron.weekdays.has(d.getDay())
          : cron.anyWeekday
            ? cron.days.has(d.getDate())
            : cron.days.has(d.getDate()) || cron.weekdays.has(d.getDay());
    if (!cron.months.has(d.getMonth() + 1) || !dayOk) {
      d.setDate(d.getDate() + 1);
      d.setHours(0, 0, 0, 0);
    } else if (!cron.hours.has(d.getHours())) {
      d.setHours(d.getHours() + 1, 0, 0, 0);
    } else if (!cron.minutes.has(d.getMinutes())) {
      d.setMinutes(d.getMinutes() + 1);
    } else {
      out.push(new Date(d));
      d.setMinutes(d.getMinutes() + 1);
    }
  }
  return out;
}

const WORDS = {
  en: {
    weekdays: ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"],
    everyHour: (m: number) => `every hour at minute ${m}`,
    everyMinutes: (n: number) => (n === 1 ? "every minute" : `every ${n} minutes`),
    several: "several times",
    everyDay: "every day",
    on: (days: string) => `on ${days}`,
    dayOfMonth: (days: string) => `on day ${days} of the month`,
    inMonth: (months: string) => ` in month ${months}`,
    at: "at",
  },
  id: {
    weekdays: ["Minggu", "Senin", "Selasa", "Rabu", "Kamis", "Jumat", "Sabtu"],
    everyHour: (m: number) => `setiap jam pada menit ${m}`,
    everyMinutes: (n: number) => (n === 1 ? "setiap menit" : `setiap ${n} menit`),
    several: "beberapa kali",
    everyDay: "setiap hari",
    on: (days: string) => `setiap ${days}`,
    dayOfMonth: (days: string) => `pada tanggal ${days} setiap bulan`,
    inMonth: (months: string) => ` di bulan ${months}`,
    at: "pukul",
  },
};
const pad = (v: number) => String(v).padStart(2, "0");

/** Plain words for the common shapes; other expressions are shown as their next runs only. */
export function explainCron(cron: Cron, lang: "en" | "id" = "en"): string {
  const w = WORDS[lang];
  const step = 60 / cron.minutes.size;
  const evenly = Number.isInteger(step) && [...cron.minutes].every((m) => m % step === 0);
  const times =
    cron.hours.size === 24 && evenly && cron.minutes.size > 1
      ? w.everyMinutes(step)
      : cron.minutes.size * cron.hours.size <= 4
      ? [...cron.hours].flatMap((h) => [...cron.minutes].map((m) => `${pad(h)}:${pad(m)}`)).join(", ")
      : cron.hours.size === 24 && cron.minutes.size === 1
        ? w.everyHour([...cron.minutes][0])
        : w.several;
  let days = w.everyDay;
  if (!cron.anyWeekday && cron.anyDay) days = w.on([...cron.weekdays].map((d) => w.weekdays[d]).join(", "));
  else if (!cron.anyDay) days = w.dayOfMonth([...cron.days].join(", "));
  const months = cron.months.size === 12 ? "" : w.inMonth([...cron.months].join(", "));
  return `${days}${months}, ${cron.hours.size === 24 && evenly && cron.minutes.size > 1 ? "" : `${w.at} `}${times}`;
}
