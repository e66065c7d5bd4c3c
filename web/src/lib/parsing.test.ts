import { describe, expect, it } from "vitest";
import { explainCron, nextRuns, parseCron } from "./cron";
import { parsePhones, parseRecipientsCsv } from "./csv";
import { parseVars, renderTemplate } from "./render";

describe("recipients input", () => {
  it("reads pasted phones one per line", () => {
    expect(parsePhones(" 6281234567890\n\n+62 812-0000-1111 \r\n")).toEqual(["6281234567890", "+62 812-0000-1111"]);
  });
  it("reads a CSV with a phone column and the rest as variables", () => {
    const { recipients, error } = parseRecipientsCsv('name,phone,city\n"Sari, S.",6281111,Bandung\nBudi,6282222,\n');
    expect(error).toBeUndefined();
    expect(recipients).toEqual([
      { phone: "6281111", vars: { name: "Sari, S.", city: "Bandung" } },
      { phone: "6282222", vars: { name: "Budi" } },
    ]);
    expect(parseRecipientsCsv("name\nSari").error).toMatch(/phone/);
  });
});

describe("template preview", () => {
  it("fills known variables and leaves unknown ones visible", () => {
    const vars = parseVars("name=Sari\ncode = X1");
    expect(renderTemplate("Hi {{ name }}, code {{code}}, {{ missing }}", vars)).toBe("Hi Sari, code X1, {{ missing }}");
  });
});

describe("cron", () => {
  it("explains a weekly schedule and lists its next three runs", () => {
    const cron = parseCron("0 9 * * MON")!;
    expect(explainCron(cron)).toBe("on Monday, at 09:00");
    const runs = nextRuns(cron, new Date(2026, 11, 4, 12, 0)); // a Friday
    expect(runs.map((d) => [d.getDate(), d.getDay(), d.getHours(), d.getMinutes()])).toEqual([
      [7, 1, 9, 0],
      [14, 1, 9, 0],
      [21, 1, 9, 0],
    ]);
  });
  it("explains every-N-minutes schedules and speaks Bahasa Indonesia", () => {
    expect(explainCron(parseCron("* * * * *")!)).toBe("every day, every minute");
    expect(explainCron(parseCron("*/15 * * * *")!)).toBe("every day, every 15 minutes");
    expect(explainCron(parseCron("30 8 * * MON,FRI")!, "id")).toBe("setiap Senin, Jumat, pukul 08:30");
  });

  it("refuses what is not a 5-field cron", () => {
    expect(parseCron("0 9 * *")).toBeNull();
    expect(parseCron("61 * * * *")).toBeNull();
  });
});
