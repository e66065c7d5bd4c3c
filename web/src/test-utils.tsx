import type { ReactNode } from "react";
import { render } from "@testing-library/react";
import { MantineProvider } from "@mantine/core";
import { I18nProvider, type Lang } from "./lib/i18n";

export function renderUi(ui: ReactNode, lang: Lang = "en") {
  return render(
    <MantineProvider>
      <I18nProvider lang={lang}>{ui}</I18nProvider>
    </MantineProvider>,
  );
}
