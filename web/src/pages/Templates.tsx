import { useEffect, useState, type FormEvent } from "react";
import { Alert, Box, Button, Card, FileInput, Grid, Group, Image, Paper, Radio, Stack, Table, Text, TextInput, Textarea, Title } from "@mantine/core";
import { api, fieldError, formError, unwrap } from "../api/client";
import type { Template } from "../api/types";
import { useT } from "../lib/i18n";
import { parseVars, renderTemplate } from "../lib/render";
import { useData } from "../lib/useData";
import { Failure, StatusBadge } from "./common";

const FIELDS = ["name", "type", "body", "image_url", "image_base64", "caption"];

/** The message as a WhatsApp bubble: the image above its caption, or the text alone. */
export function MessagePreview({ text, image }: { text: string; image?: string | null }) {
  const { t } = useT();
  return (
    <Box bg="#e5ddd5" p="md" style={{ borderRadius: 8 }} aria-label={t("preview")}>
      <Paper p="xs" maw={320} bg="#dcf8c6" shadow="xs" style={{ borderRadius: 8 }}>
        {image && <Image src={image} alt={t("image")} radius="sm" mb={text ? "xs" : 0} />}
        <Text size="sm" style={{ whiteSpace: "pre-wrap", wordBreak: "break-word" }} data-testid="preview-text">
          {text}
        </Text>
      </Paper>
    </Box>
  );
}

async function fileToDataUrl(file: File): Promise<string> {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

export function TemplateForm({ onCreated }: { onCreated: () => void }) {
  const { t } = useT();
  const [name, setName] = useState("");
  const [type, setType] = useState<"text" | "image">("text");
  const [body, setBody] = useState("Hello {{ name }}!");
  const [caption, setCaption] = useState("");
  const [imageUrl, setImageUrl] = useState("");
  const [imageData, setImageData] = useState<string | null>(null);
  const [samples, setSamples] = useState("name=Sari\nphone=6281234567890");
  const [failure, setFailure] = useState<unknown>(null);
  const vars = parseVars(samples);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setFailure(null);
    try {
      const payload =
        type === "text"
          ? { name, type, body }
          : { name, type, caption: caption || null, image_url: imageData ? null : imageUrl || null, image_base64: imageData ? imageData.slice(imageData.indexOf(",") + 1) : null };
      unwrap(await api.POST("/api/v1/templates", { body: payload }));
      setName("");
      onCreated();
    } catch (err) {
      setFailure(err);
    }
  };
  const general = formError(failure, FIELDS);
  return (
    <Grid>
      <Grid.Col span={{ base: 12, md: 7 }}>
        <form onSubmit={submit} aria-label={t("newTemplate")}>
          <Stack>
            {general && <Alert color="red">{general}</Alert>}
            <TextInput label={t("name")} required value={name} onChange={(e) => setName(e.currentTarget.value)} error={fieldError(failure, "name")} />
            <Radio.Group label={t("type")} value={type} onChange={(v) => setType(v as "text" | "image")}>
              <Group mt="xs">
                <Radio value="text" label={t("text")} />
                <Radio value="image" label={t("image")} />
              </Group>
            </Radio.Group>
            {type === "text" ? (
              <Textarea label={t("body")} required autosize minRows={3} value={body} onChange={(e) => setBody(e.currentTarget.value)} error={fieldError(failure, "body")} />
            ) : (
              <>
                <FileInput label={t("imageFile")} accept="image/png,image/jpeg,image/webp" clearable onChange={async (f) => setImageData(f ? await fileToDataUrl(f) : null)} error={fieldError(failure, "image_base64")} />
                <TextInput label={t("imageUrl")} value={imageUrl} onChange={(e) => setImageUrl(e.currentTarget.value)} error={fieldError(failure, "image_url")} disabled={!!imageData} />
                <Textarea label={t("caption")} autosize minRows={2} value={caption} onChange={(e) => setCaption(e.currentTarget.value)} error={fieldError(failure, "caption")} />
              </>
            )}
            <Textarea label={t("sampleVars")} autosize minRows={2} value={samples} onChange={(e) => setSamples(e.currentTarget.value)} />
            <Group>
              <Button type="submit">{t("createTemplate")}</Button>
            </Group>
          </Stack>
        </form>
      </Grid.Col>
      <Grid.Col span={{ base: 12, md: 5 }}>
        <Text fw={600} mb="xs">
          {t("preview")}
        </Text>
        {/* an image URL from elsewhere is not loaded here (nothing from outside the machine): pick a file to see it */}
        <MessagePreview text={renderTemplate(type === "text" ? body : caption, vars)} image={type === "image" ? imageData : null} />
      </Grid.Col>
    </Grid>
  );
}

function StatusActions({ tpl, onChange }: { tpl: Template; onChange: () => void }) {
  const { t } = useT();
  const [error, setError] = useState<unknown>(null);
  const set = (status: "active" | "inactive" | "archived") => async () => {
    try {
      unwrap(await api.PATCH("/api/v1/templates/{id}", { params: { path: { id: tpl.id } }, body: { status } }));
      onChange();
    } catch (e) {
      setError(e);
    }
  };
  useEffect(() => {
    setError(null);
  }, [tpl.status]);
  return (
    <Group gap="xs">
      {tpl.status !== "active" && (
        <Button size="xs" variant="light" onClick={set("active")}>
          {t("activate")}
        </Button>
      )}
      {tpl.status === "active" && (
        <Button size="xs" variant="light" onClick={set("inactive")}>
          {t("deactivate")}
        </Button>
      )}
      {tpl.status !== "archived" && (
        <Button size="xs" variant="subtle" onClick={set("archived")}>
          {t("archive")}
        </Button>
      )}
      <Failure error={error} />
    </Group>
  );
}

export function TemplatesPage() {
  const { t } = useT();
  const { data, error, reload } = useData(async () => unwrap(await api.GET("/api/v1/templates")).items);
  return (
    <Stack>
      <Title order={1} size="h2">
        {t("templates")}
      </Title>
      <Card withBorder>
        <Title order={2} size="h4" mb="sm">
          {t("newTemplate")}
        </Title>
        <TemplateForm onCreated={reload} />
      </Card>
      <Failure error={error} />
      <Table.ScrollContainer minWidth={520}>
        <Table striped>
          <Table.Thead>
            <Table.Tr>
              <Table.Th>{t("name")}</Table.Th>
              <Table.Th>{t("type")}</Table.Th>
              <Table.Th>{t("body")}</Table.Th>
              <Table.Th>{t("status")}</Table.Th>
              <Table.Th />
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {data?.map((tpl) => (
              <Table.Tr key={tpl.id}>
                <Table.Td>{tpl.name}</Table.Td>
                <Table.Td>{tpl.type}</Table.Td>
                <Table.Td>
                  <Text size="sm" lineClamp={2}>
                    {tpl.body ?? tpl.caption ?? ""}
                  </Text>
                </Table.Td>
                <Table.Td>
                  <StatusBadge status={tpl.status} />
                </Table.Td>
                <Table.Td>
                  <StatusActions tpl={tpl} onChange={reload} />
                </Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      </Table.ScrollContainer>
    </Stack>
  );
}
