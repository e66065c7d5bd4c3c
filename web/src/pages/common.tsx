import { Alert, Badge, Group, Progress, Text } from "@mantine/core";
import { percent, type Progress as P } from "../lib/progress";
import { useT } from "../lib/i18n";

const COLORS: Record<string, string> = {
  running: "blue",
  scheduled: "grape",
  paused: "yellow",
  completed: "teal",
  cancelled: "gray",
  failed: "red",
  connected: "teal",
  qr_pending: "yellow",
  disconnected: "gray",
  logged_out: "red",
  active: "teal",
  inactive: "gray",
  archived: "dark",
  queued: "gray",
  sending: "blue",
  sent: "cyan",
  delivered: "teal",
  read: "green",
  skipped: "dark",
};

export function StatusBadge({ status }: { status: string }) {
  return (
    <Badge color={COLORS[status] ?? "gray"} variant="light" data-status={status}>
      {status.replaceAll("_", " ")}
    </Badge>
  );
}

/** A campaign's progress bar with its percentage in words (for screen readers and tests). */
export function CampaignProgress({ progress, label }: { progress: Pick<P, "counts" | "status" | "total_recipients">; label: string }) {
  const value = percent(progress);
  return (
    <Group gap="xs" wrap="nowrap">
      <Progress value={value} aria-label={label} style={{ flex: 1, minWidth: 80 }} color={progress.status === "completed" ? "teal" : "blue"} animated={progress.status === "running"} />
      <Text size="sm" w={44} ta="right" data-testid="progress-percent">
        {value}%
      </Text>
    </Group>
  );
}

export function Failure({ error }: { error: unknown }) {
  const { t } = useT();
  if (!error) return null;
  return (
    <Alert color="red" role="alert" title={t("error")}>
      {error instanceof Error ? error.message : String(error)}
    </Alert>
  );
}

export function when(ts: string | null | undefined): string {
  return ts ? new Date(ts).toLocaleString() : "—";
}
