import { Card, Group, Progress, SimpleGrid, Stack, Text, Title } from "@mantine/core";
import { api, unwrap } from "../api/client";
import type { Me } from "../api/types";
import { useT } from "../lib/i18n";
import { useLive } from "../lib/live";
import { Link } from "../lib/router";
import { useData } from "../lib/useData";
import { CampaignTable, liveCampaign } from "./Campaigns";
import { Failure, StatusBadge } from "./common";

/** `used` of `limit` (null: no limit) as a labelled bar. */
export function UsageBar({ label, used, limit }: { label: string; used: number; limit: number | null | undefined }) {
  const { t } = useT();
  const value = limit ? Math.min(100, (used * 100) / limit) : 0;
  return (
    <Stack gap={2}>
      <Group justify="space-between">
        <Text size="sm">{label}</Text>
        <Text size="sm">
          {used} / {limit ?? t("unlimited")}
        </Text>
      </Group>
      <Progress value={value} aria-label={label} color={value > 90 ? "red" : "teal"} />
    </Stack>
  );
}

export function UsageCard({ me }: { me: Me }) {
  const { t } = useT();
  const limits = me.plan.limits;
  return (
    <Card withBorder>
      <Title order={2} size="h4" mb="xs">
        {t("usage")} · {t("plan")}: {me.plan.name}
      </Title>
      <Stack gap="xs">
        <UsageBar label={t("messagesPerHour")} used={me.usage.messages} limit={limits.messages_per_hour} />
        <UsageBar label={t("apiCalls")} used={me.usage.api_calls} limit={limits.api_calls_per_hour} />
        <UsageBar label={t("sessions")} used={me.usage.sessions} limit={limits.sessions} />
      </Stack>
    </Card>
  );
}

export function OverviewPage() {
  const { t } = useT();
  const { data, setData, error, reload } = useData(async () => {
    const [me, sessions, campaigns] = await Promise.all([api.GET("/api/v1/me"), api.GET("/api/v1/sessions"), api.GET("/api/v1/campaigns")]);
    return {
      me: unwrap(me),
      sessions: unwrap(sessions).items,
      campaigns: unwrap(campaigns).items.filter((c) => ["running", "scheduled", "paused"].includes(c.status)),
    };
  });
  useLive((n) => {
    if (n.kind === "campaign.progress") setData((d) => d && { ...d, campaigns: d.campaigns.map((c) => liveCampaign(c, n)) });
    else if (n.kind !== "delivery.status" && n.kind !== "message.received") reload();
  });
  return (
    <Stack>
      <Title order={1} size="h2">
        {t("overview")}
      </Title>
      <Failure error={error} />
      {data && (
        <>
          <SimpleGrid cols={{ base: 1, md: 2 }}>
            <Card withBorder>
              <Group justify="space-between" mb="xs">
                <Title order={2} size="h4">
                  {t("linkedNumbers")}
                </Title>
                <Link href="/numbers">{t("viewAll")}</Link>
              </Group>
              {data.sessions.length === 0 && <Text c="dimmed">{t("empty")}</Text>}
              {data.sessions.map((s) => (
                <Group key={s.id} justify="space-between">
                  <Text>{s.name}</Text>
                  <StatusBadge status={s.status} />
                </Group>
              ))}
            </Card>
            <UsageCard me={data.me} />
          </SimpleGrid>
          <Card withBorder>
            <Group justify="space-between" mb="xs">
              <Title order={2} size="h4">
                {t("running")}
              </Title>
              <Link href="/campaigns">{t("viewAll")}</Link>
            </Group>
            <CampaignTable campaigns={data.campaigns} />
          </Card>
        </>
      )}
    </Stack>
  );
}
