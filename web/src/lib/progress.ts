// Campaign progress as the screen shows it: counts from the API, then merged live from
// `campaign.progress` and `campaign.status` notifications (docs/events.md).

export interface Counts {
  queued: number;
  sending: number;
  sent: number;
  delivered: number;
  read: number;
  failed: number;
  skipped: number;
  waiting_quota: number;
  /** Due recipients waiting for the send window (docs/safe-sending.md). */
  waiting_window: number;
  /** Recipients waiting for their number's next day (daily cap or warm-up). */
  waiting_cap: number;
  [other: string]: number;
}

export interface Progress {
  campaign_id: string;
  status: string;
  total_recipients: number;
  counts: Counts;
  /** When these counts were read (the notification's `at`, or the fetch time). */
  at: string;
}

export interface Notification {
  id: string;
  kind: string;
  at: string;
  data: Record<string, unknown>;
}

export const FINAL_STATUSES = ["completed", "cancelled", "failed"];

/** Recipients that reached a final state. */
export function done(counts: Partial<Counts>): number {
  return (counts.sent ?? 0) + (counts.delivered ?? 0) + (counts.read ?? 0) + (counts.failed ?? 0) + (counts.skipped ?? 0);
}

/** Percent (0..100, whole) of recipients with a final state. */
export function percent(p: Pick<Progress, "counts" | "total_recipients" | "status">): number {
  if (p.status === "completed") return 100;
  if (!p.total_recipients) return 0;
  return Math.min(100, Math.floor((done(p.counts) * 100) / p.total_recipients));
}

/**
 * The progress after a notification. Older counts never replace newer ones (notifications can
 * come twice or late), and a final status is kept once reached.
 */
export function applyNotification(p: Progress, n: Notification): Progress {
  if (n.data.campaign_id !== p.campaign_id) return p;
  if (n.kind === "campaign.progress") {
    if (n.at < p.at) return p;
    const status = FINAL_STATUSES.includes(p.status) ? p.status : String(n.data.status ?? p.status);
    return {
      ...p,
      status,
      total_recipients: Number(n.data.total_recipients ?? p.total_recipients),
      counts: { ...p.counts, ...(n.data.counts as Partial<Counts>) } as Counts,
      at: n.at,
    };
  }
  if (n.kind === "campaign.status" && typeof n.data.status === "string") {
    if (FINAL_STATUSES.includes(p.status)) return p;
    return { ...p, status: n.data.status };
  }
  return p;
}
