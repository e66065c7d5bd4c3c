import { Suspense, lazy, useEffect, useState } from "react";
import { AppShell, Burger, Button, Group, MantineProvider, NavLink, NativeSelect, Stack, Text, createTheme } from "@mantine/core";
import { useDisclosure } from "@mantine/hooks";
import { I18nProvider, useT, type Lang } from "./lib/i18n";
import { Link, match, navigate, useLocation } from "./lib/router";
import { getToken, onTokenChange, setToken } from "./lib/auth";
import type { Key } from "./lib/messages";
import { AuthPage } from "./pages/Auth";
// the screens behind the sign-in load on demand: the first screen needs only the shell and Auth
// (the first-screen budget, docs/dashboard.md)
const OverviewPage = lazy(() => import("./pages/Overview").then((m) => ({ default: m.OverviewPage })));
const CampaignsPage = lazy(() => import("./pages/Campaigns").then((m) => ({ default: m.CampaignsPage })));
const CampaignNewPage = lazy(() => import("./pages/CampaignNew").then((m) => ({ default: m.CampaignNewPage })));
const CampaignDetailPage = lazy(() => import("./pages/CampaignDetail").then((m) => ({ default: m.CampaignDetailPage })));
const NumbersPage = lazy(() => import("./pages/Numbers").then((m) => ({ default: m.NumbersPage })));
const TemplatesPage = lazy(() => import("./pages/Templates").then((m) => ({ default: m.TemplatesPage })));
const ChatsPage = lazy(() => import("./pages/Chats").then((m) => ({ default: m.ChatsPage })));
const ContactsPage = lazy(() => import("./pages/Contacts").then((m) => ({ default: m.ContactsPage })));
const SettingsPage = lazy(() => import("./pages/Settings").then((m) => ({ default: m.SettingsPage })));

const theme = createTheme({ primaryColor: "teal" });

const NAV: [string, Key][] = [
  ["/", "overview"],
  ["/campaigns", "campaigns"],
  ["/numbers", "numbers"],
  ["/templates", "templates"],
  ["/chats", "chats"],
  ["/contacts", "contacts"],
  ["/settings", "settings"],
];

function Screen({ path }: { path: string }) {
  let m: Record<string, string> | null;
  if (path === "/" || path === "") return <OverviewPage />;
  if (path === "/campaigns") return <CampaignsPage />;
  if (path === "/campaigns/new") return <CampaignNewPage />;
  if ((m = match("/campaigns/:id", path))) return <CampaignDetailPage id={m.id} />;
  if (path === "/numbers") return <NumbersPage />;
  if (path === "/templates") return <TemplatesPage />;
  if (path === "/chats") return <ChatsPage />;
  if ((m = match("/chats/:id", path))) return <ChatsPage chatId={m.id} />;
  if (path === "/contacts") return <ContactsPage />;
  if (path === "/settings") return <SettingsPage />;
  return <OverviewPage />;
}

function Shell() {
  const { t, lang, setLang } = useT();
  const { path } = useLocation();
  const [opened, { toggle, close }] = useDisclosure();
  const [token, setTokenState] = useState(getToken());
  useEffect(() => {
    const off = onTokenChange(setTokenState);
    return () => {
      off();
    };
  }, []);

  const langSelect = (
    <NativeSelect
      label={t("language")}
      size="xs"
      value={lang}
      onChange={(e) => setLang(e.currentTarget.value as Lang)}
      data={[
        { value: "en", label: "English" },
        { value: "id", label: "Bahasa Indonesia" },
      ]}
    />
  );
  if (!token) return <AuthPage languageSelect={langSelect} />;

  const active = (href: string) => (href === "/" ? path === "/" : path.startsWith(href));
  return (
    <>
      <a className="skip-link" href="#main">
        {t("skipToContent")}
      </a>
      <AppShell header={{ height: 56 }} navbar={{ width: 220, breakpoint: "sm", collapsed: { mobile: !opened } }} padding="md">
        <AppShell.Header>
          <Group h="100%" px="md" justify="space-between">
            <Group>
              <Button variant="subtle" hiddenFrom="sm" px="xs" onClick={toggle} aria-expanded={opened} leftSection={<Burger component="span" opened={opened} size="sm" aria-hidden />}>
                {t("menu")}
              </Button>
              <Text fw={700} component={Link} href="/">
                {t("appName")}
              </Text>
            </Group>
            <Button
              variant="subtle"
              onClick={() => {
                setToken(null);
                navigate("/");
              }}
            >
              {t("signOut")}
            </Button>
          </Group>
        </AppShell.Header>
        <AppShell.Navbar p="xs" aria-label={t("menu")}>
          <Stack justify="space-between" h="100%">
            <nav>
              {NAV.map(([href, key]) => (
                <NavLink key={href} component={Link} href={href} label={t(key)} active={active(href)} onClick={close} />
              ))}
            </nav>
            {langSelect}
          </Stack>
        </AppShell.Navbar>
        <AppShell.Main id="main">
          <Suspense fallback={<Text>{t("loading")}</Text>}>
            <Screen path={path} />
          </Suspense>
        </AppShell.Main>
      </AppShell>
    </>
  );
}

export function App() {
  return (
    <MantineProvider theme={theme}>
      <I18nProvider>
        <Shell />
      </I18nProvider>
    </MantineProvider>
  );
}
