// What a long request shows while it runs: the upload's progress, then an indeterminate bar
// with the elapsed time while Herald accepts what it received (lib/upload.ts).
import { useEffect, useState } from "react";
import { Progress, Stack, Text } from "@mantine/core";
import { useT } from "../lib/i18n";
import type { Transfer } from "../lib/upload";

function size(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
  if (bytes >= 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${bytes} B`;
}

/** The elapsed whole seconds since `since`, ticking every second. */
function useElapsed(since: number): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    setNow(Date.now());
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, [since]);
  return Math.max(0, Math.floor((now - since) / 1000));
}

export function LongWork({ transfer, label }: { transfer: Transfer | null; label: string }) {
  const { t } = useT();
  const elapsed = useElapsed(transfer?.since ?? 0);
  if (!transfer) return null;
  const uploading = transfer.phase === "uploading";
  const pct = uploading && transfer.total ? Math.floor((transfer.loaded * 100) / transfer.total) : 100;
  return (
    <Stack gap={4} role="status" aria-live="polite" data-testid="long-work" data-phase={transfer.phase}>
      <Progress value={pct} aria-label={label} striped={!uploading} animated={!uploading} />
      <Text size="sm">
        {uploading
          ? t("uploadingBody", { loaded: size(transfer.loaded), total: size(transfer.total), pct })
          : t("acceptingBody", { total: size(transfer.total), s: elapsed })}
      </Text>
    </Stack>
  );
}
