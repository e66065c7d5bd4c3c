// Short names for the generated schemas the screens use.
import type { components } from "./schema";

type S = components["schemas"];
export type Campaign = S["herald_api.routes.campaigns.CampaignView"];
export type CampaignCreated = S["herald_api.routes.campaigns.CampaignCreatedView"];
export type CreateCampaign = S["herald_api.routes.campaigns.CreateCampaign"];
export type Recipient = S["herald_api.routes.campaigns.RecipientView"];
export type Session = S["herald_api.routes.sessions.SessionView"];
export type Template = S["herald_api.routes.templates.TemplateView"];
export type Chat = S["herald_api.routes.chats.ChatView"];
export type ChatMessage = S["herald_api.routes.chats.MessageView"];
export type Contact = S["herald_api.routes.contacts.ContactView"];
export type Me = S["herald_api.routes.accounts.MeResponse"];
export type ApiKeyCreated = S["herald_api.routes.accounts.ApiKeyCreated"];
export type ApiKey = S["herald_api.routes.accounts.ApiKeyView"];

