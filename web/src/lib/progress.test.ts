import { describe, expect, it } from "vitest";
import { applyNotification, percent, type Progress } from "./progress";

const counts = { queued: 10, sending: 0, sent: 0, delivered: 0, read: 0, failed: 0, skipped: 0, waiting_quota: 0, waiting_window: 0, waiting_cap: 0 };
const start: Progress = { campaign_id: "c1", status: "running", total_recipients: 10, counts, at: "2026-12-04T10:00:00.000Z" };
const progress = (at: string, c: Partial<typeof counts>, status = "running") => ({
  id: `c1@${at}`,
  kind: "campaign.progress",
  at,
  data: { campaign_id: "c1", status, total_recipients: 10, counts: { ...counts, ...c } },
});

describe("live campaign progress", () => {
  it("moves the bar with each notification of its campaign", () => {
    const p = applyNotification(start, progress("2026-12-04T10:00:01.000Z", { queued: 6, sent: 3, failed: 1 }));
    expect(p.counts.sent).toBe(3);
    expect(percent(p)).toBe(40);
  });

  it("ignores other campaigns and older counts that arrive late", () => {
    const newer = applyNotification(start, progress("2026-12-04T10:00:02.000Z", { queued: 0, delivered: 10 }));
    const late = applyNotification(newer, progress("2026-12-04T10:00:01.000Z", { queued: 5, sent: 5 }));
    expect(late.counts.delivered).toBe(10);
    const other = { ...progress("2026-12-04T10:00:03.000Z", { queued: 0 }), data: { campaign_id: "c2", counts } };
    expect(applyNotification(newer, other)).toBe(newer);
  });

  it("shows 100% once completed and keeps a final status", () => {
    const done = applyNotification(start, { id: "1", kind: "campaign.status", at: start.at, data: { campaign_id: "c1", status: "completed" } });
    expect(percent(done)).toBe(100);
    // a progress notification read just before completion does not bring "running" back
    const after = applyNotification(done, progress("2026-12-04T10:00:05.000Z", { queued: 0, read: 10 }));
    expect(after.status).toBe("completed");
    expect(after.counts.read).toBe(10);
  });

  it("counts skipped and failed recipients as done, never over 100%", () => {
    expect(percent({ status: "running", total_recipients: 4, counts: { ...counts, queued: 0, skipped: 2, failed: 2 } })).toBe(100);
    expect(percent({ status: "running", total_recipients: 0, counts })).toBe(0);
  });
});
