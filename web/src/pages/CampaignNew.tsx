import { Stack, Text, Title } from "@mantine/core";
import { api, unwrap } from "../api/client";
import { sendWithProgress } from "../lib/upload";
import type { CampaignCreated } from "../api/types";
import { useT } from "../lib/i18n";
import { navigate } from "../lib/router";
import { useData } from "../lib/useData";
import { CampaignForm } from "./CampaignForm";
import { Failure } from "./common";

export function CampaignNewPage() {
  const { t } = useT();
  const { data, error } = useData(async () => {
    const [templates, sessions] = await Promise.all([api.GET("/api/v1/templates"), api.GET("/api/v1/sessions")]);
    return { templates: unwrap(templates).items, sessions: unwrap(sessions).items };
  });
  return (
    <Stack>
      <Title order={1} size="h2">
        {t("newCampaign")}
      </Title>
      <Failure error={error} />
      {data ? (
        <CampaignForm
          templates={data.templates}
          sessions={data.sessions}
          onSubmit={async (body, onProgress) => {
            // XMLHttpRequest rather than the fetch client: it reports the upload's progress
            const created = await sendWithProgress<CampaignCreated>("/api/v1/campaigns", body, { onProgress });
            const rejected = created.rejected_count ?? created.rejected?.length ?? 0;
            navigate(`/campaigns/${created.id}?created=1${rejected ? `&rejected=${rejected}` : ""}`);
          }}
        />
      ) : (
        <Text>{t("loading")}</Text>
      )}
    </Stack>
  );
}
