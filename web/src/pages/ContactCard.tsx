// A contact's card: name, favourite, tags and every field, as Contacts and Chats show it.
import { Badge, Card, Group, Stack, Table, Text } from "@mantine/core";
import type { Contact } from "../api/types";
import { useT } from "../lib/i18n";
import { when } from "./common";

export function ContactCard({ contact }: { contact: Contact }) {
  const { t } = useT();
  const fields = Object.entries(contact.fields ?? {});
  return (
    <Card withBorder p="sm" component="section" aria-label={t("contactCard")} data-testid="contact-card">
      <Stack gap={6}>
        <Text fw={600}>
          {contact.favorite ? "★ " : ""}
          {contact.name ?? contact.phone ?? contact.lid}
        </Text>
        <Text size="sm" c="dimmed">
          {contact.phone ?? contact.lid}
        </Text>
        {contact.tags.length > 0 && (
          <Group gap={4}>
            {contact.tags.map((tag) => (
              <Badge key={tag} variant="outline" size="sm">
                {tag}
              </Badge>
            ))}
          </Group>
        )}
        {fields.length ? (
          <Table aria-label={t("fields")} withRowBorders={false} verticalSpacing={2}>
            <Table.Tbody>
              {fields.map(([k, v]) => (
                <Table.Tr key={k}>
                  <Table.Th fw={500} w="40%">
                    {k}
                  </Table.Th>
                  <Table.Td style={{ wordBreak: "break-word" }}>{typeof v === "string" ? v : JSON.stringify(v)}</Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        ) : (
          <Text size="xs" c="dimmed">
            {t("noFields")}
          </Text>
        )}
        <Text size="xs" c="dimmed">
          {t("source")}: {contact.source} · {t("created")}: {when(contact.created_at)} · {t("updated")}: {when(contact.updated_at)}
        </Text>
      </Stack>
    </Card>
  );
}
