import { Button, Group, Stack, Table, Text, Title } from "@mantine/core";
import { api, unwrap } from "../api/client";
import type { Campaign } from "../api/types";
import { useT } from "../lib/i18n";
import { useLive } from "../lib/live";
import { applyNotification } from "../lib/progress";
import { Link } from "../lib/router";
import { useData } from "../lib/useData";
import { CampaignProgress, Failure, StatusBadge, when } from "./common";

/** Applies a live notification to a campaign of a list. */
export function liveCampaign(c: Campaign, n: Parameters<typeof applyNotification>[1]): Campaign {
  const p = applyNotification({ campaign_id: c.id, status: c.status, total_recipients: c.total_recipients, counts: c.counts, at: (c as { _at?: string })._at ?? "" }, n);
  return p.counts === c.counts && p.status === c.status ? c : ({ ...c, status: p.status, total_recipients: p.total_recipients, counts: p.counts, _at: p.at } as Campaign);
}

export function CampaignTable({ campaigns }: { campaigns: Campaign[] }) {
  const { t } = useT();
  if (campaigns.length === 0) return <Text c="dimmed">{t("empty")}</Text>;
  return (
    <Table.ScrollContainer minWidth={520}>
      <Table striped>
        <Table.Thead>
          <Table.Tr>
            <Table.Th>{t("name")}</Table.Th>
            <Table.Th>{t("status")}</Table.Th>
            <Table.Th>{t("recipients")}</Table.Th>
            <Table.Th w="35%">{t("progress")}</Table.Th>
          </Table.Tr>
        </Table.Thead>
        <Table.Tbody>
          {campaigns.map((c) => (
            <Table.Tr key={c.id}>
              <Table.Td>
                <Link href={`/campaigns/${c.id}`}>{c.name}</Link>
                <Text size="xs" c="dimmed">
                  {when(c.scheduled_at ?? c.created_at)}
                </Text>
              </Table.Td>
              <Table.Td>
                <StatusBadge status={c.status} />
              </Table.Td>
              <Table.Td>{c.total_recipients}</Table.Td>
              <Table.Td>
                <CampaignProgress progress={c} label={`${t("progress")}: ${c.name}`} />
              </Table.Td>
            </Table.Tr>
          ))}
        </Table.Tbody>
      </Table>
    </Table.ScrollContainer>
  );
}

export function CampaignsPage() {
  const { t } = useT();
  const { data, setData, error, reload } = useData(async () => unwrap(await api.GET("/api/v1/campaigns")).items);
  useLive((n) => {
    if (n.kind === "campaign.status" && !data?.some((c) => c.id === n.data.campaign_id)) reload();
    else if (n.kind === "stream.lagged") reload();
    else setData((list) => list?.map((c) => liveCampaign(c, n)));
  });
  return (
    <Stack>
      <Group justify="space-between">
        <Title order={1} size="h2">
          {t("campaigns")}
        </Title>
        <Button component={Link} href="/campaigns/new">
          {t("newCampaign")}
        </Button>
      </Group>
      <Failure error={error} />
      {data ? <CampaignTable campaigns={data} /> : <Text>{t("loading")}</Text>}
    </Stack>
  );
}
