import { useState, type FormEvent } from "react";
import { Alert, Button, Card, Code, Group, Stack, Table, Text, TextInput, Title } from "@mantine/core";
import { api, fieldError, unwrap } from "../api/client";
import type { ApiKeyCreated } from "../api/types";
import { useT } from "../lib/i18n";
import { useData } from "../lib/useData";
import { Failure, when } from "./common";
import { UsageCard } from "./Overview";

export function SettingsPage() {
  const { t } = useT();
  const me = useData(async () => unwrap(await api.GET("/api/v1/me")));
  const keys = useData(async () => unwrap(await api.GET("/api/v1/api-keys")).items);
  const [name, setName] = useState("");
  const [shown, setShown] = useState<string | null>(null);
  const [failure, setFailure] = useState<unknown>(null);

  const create = async (e: FormEvent) => {
    e.preventDefault();
    setFailure(null);
    try {
      // the 201 answer is not described in the OpenAPI document yet
      const created = unwrap(await api.POST("/api/v1/api-keys", { body: { name } })) as unknown as ApiKeyCreated;
      setShown(created.key);
      setName("");
      keys.reload();
    } catch (err) {
      setFailure(err);
    }
  };
  const revoke = async (id: string) => {
    try {
      unwrap(await api.DELETE("/api/v1/api-keys/{id}", { params: { path: { id } } }));
      keys.reload();
    } catch (err) {
      setFailure(err);
    }
  };
  return (
    <Stack>
      <Title order={1} size="h2">
        {t("settings")}
      </Title>
      {me.data && (
        <Text>
          {me.data.user?.email ?? ""} · {me.data.tenant.name}
        </Text>
      )}
      {me.data && <UsageCard me={me.data} />}
      <Card withBorder>
        <Title order={2} size="h4" mb="xs">
          {t("apiKeys")}
        </Title>
        <form onSubmit={create} aria-label={t("newKey")}>
          <Group align="end">
            <TextInput label={t("keyName")} required value={name} onChange={(e) => setName(e.currentTarget.value)} error={fieldError(failure, "name")} />
            <Button type="submit">{t("newKey")}</Button>
          </Group>
        </form>
        {shown && (
          <Alert color="yellow" mt="sm" title={t("keyShownOnce")}>
            <Code block data-testid="new-key">
              {shown}
            </Code>
          </Alert>
        )}
        <Failure error={failure instanceof Error && !fieldError(failure, "name") ? failure : null} />
        <Table.ScrollContainer minWidth={400}>
          <Table mt="sm">
            <Table.Tbody>
              {keys.data?.map((k) => (
                <Table.Tr key={k.id}>
                  <Table.Td>{k.name}</Table.Td>
                  <Table.Td>
                    <Code>{k.prefix}…</Code>
                  </Table.Td>
                  <Table.Td>{when(k.created_at)}</Table.Td>
                  <Table.Td>
                    <Button size="xs" color="red" variant="subtle" onClick={() => void revoke(k.id)}>
                      {t("revoke")}
                    </Button>
                  </Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      </Card>
    </Stack>
  );
}
