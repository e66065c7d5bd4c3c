//! A fresh database with one tenant and one linked number, campaigns written through the batch
//! path the API uses, and a fake [`Gateway`] that records what it was asked to send.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use herald_campaigns::{self as campaigns, NewCampaign, Recipient};
use herald_domain::campaign::{Campaign, MessageSpec};
use herald_domain::delivery::{delivery_id, Delivery};
use herald_domain::phone::Phone;
use herald_domain::store;
use herald_domain::template::TemplateKind;
use herald_domain::template_body::TemplateBody;
use herald_gateway::{
    Gateway, GatewayContact, GatewayError, MessageContent, OutboundMessage, SendAccepted,
    SessionStatus,
};
use herald_scheduler::dispatch::{DispatchConfig, Dispatcher};
use sqlx::PgPool;
use uuid::Uuid;

pub const TOKEN: &str = "number-token";

/// What the fake gateway answers for one phone, call after call (the last answer repeats).
#[derive(Clone)]
pub enum Answer {
    Accept,
    Transient(&'static str),
    Permanent(&'static str),
}

/// Records every send (token, phone, message id, text) and answers as scripted per phone.
#[derive(Default)]
pub struct FakeGateway {
    pub sent: Mutex<Vec<(String, String, String, String)>>,
    script: Mutex<HashMap<String, Vec<Answer>>>,
}

impl FakeGateway {
    pub fn script(&self, phone: &str, answers: Vec<Answer>) {
        self.script
            .lock()
            .unwrap()
            .insert(phone.to_string(), answers);
    }

    pub fn calls(&self) -> Vec<(String, String, String, String)> {
        self.sent.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Gateway for FakeGateway {
    async fn send(
        &self,
        token: &str,
        message: &OutboundMessage,
    ) -> Result<SendAccepted, GatewayError> {
        let text = match &message.content {
            MessageContent::Text { body } => body.clone(),
            other => format!("{other:?}"),
        };
        self.sent.lock().unwrap().push((
            token.to_string(),
            message.phone.clone(),
            message.message_id.clone(),
            text,
        ));
        let answer = {
            let mut script = self.script.lock().unwrap();
            match script.get_mut(&message.phone) {
                Some(answers) if answers.len() > 1 => answers.remove(0),
                Some(answers) => answers[0].clone(),
                None => Answer::Accept,
            }
        };
        match answer {
            Answer::Accept => Ok(SendAccepted {
                message_id: message.message_id.clone(),
                timestamp: None,
            }),
            // due again at once, so the test need not wait out a backoff
            Answer::Transient(m) => Err(GatewayError::Transient {
                message: m.to_string(),
                retry_after: Some(std::time::Duration::ZERO),
            }),
            Answer::Permanent(m) => Err(GatewayError::Permanent {
                message: m.to_string(),
            }),
        }
    }

    async fn set_webhook(&self, _: &str, _: &str, _: &[&str]) -> Result<(), GatewayError> {
        Ok(())
    }

    async fn session_status(&self, _: &str) -> Result<SessionStatus, GatewayError> {
        Err(GatewayError::Permanent {
            message: "not used by dispatch".into(),
        })
    }

    async fn set_hmac_key(&self, _: &str, _: &str) -> Result<(), GatewayError> {
        Ok(())
    }

    async fn contacts(&self, _: &str) -> Result<Vec<GatewayContact>, GatewayError> {
        Ok(Vec::new())
    }
}

pub struct World {
    pub pool: PgPool,
    pub tenant_id: Uuid,
    pub session_id: Uuid,
    pub gateway: Arc<FakeGateway>,
}

impl World {
    /// A fresh database with a tenant on the basic plan and one linked number.
    pub async fn new() -> World {
        let pool = herald_migrations::testing::fresh_database()
            .await
            .expect("fresh database");
        let tenant_id = Uuid::new_v4();
        let session_id = Uuid::new_v4();
        sqlx::query("INSERT INTO tenants (id, name) VALUES ($1, 'Toko Maju')")
            .bind(tenant_id)
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO session_credentials (session_id, tenant_id, gateway_token)
             VALUES ($1, $2, $3)",
        )
        .bind(session_id)
        .bind(tenant_id)
        .bind(TOKEN)
        .execute(&pool)
        .await
        .unwrap();
        World {
            pool,
            tenant_id,
            session_id,
            gateway: Arc::new(FakeGateway::default()),
        }
    }

    pub fn dispatcher(&self, batch_size: i64) -> Arc<Dispatcher> {
        Dispatcher::new(
            self.pool.clone(),
            self.gateway.clone(),
            DispatchConfig {
                batch_size,
                ..DispatchConfig::default()
            },
        )
    }

    /// A text campaign starting now to `phones` (E.164), written as the API writes one.
    pub async fn campaign(&self, phones: &[&str]) -> Uuid {
        let id = Uuid::new_v4();
        let recipients = phones
            .iter()
            .map(|p| Recipient {
                phone: Phone::parse(p, "ID").unwrap(),
                vars: serde_json::Map::from_iter([("name".to_string(), "Budi".into())]),
            })
            .collect();
        let mut tx = self.pool.begin().await.unwrap();
        campaigns::write(
            &mut tx,
            NewCampaign {
                id,
                tenant_id: self.tenant_id,
                name: "promo".into(),
                template_id: Uuid::new_v4(),
                session_id: self.session_id,
                message: MessageSpec {
                    kind: TemplateKind::Text,
                    body: Some(TemplateBody::parse("Halo {{name}}").unwrap()),
                    caption: None,
                    image_url: None,
                    image: None,
                },
                recipients,
                scheduled_at: None,
                parent_id: None,
                recurrence: None,
                pacing: None,
                at: Utc::now(),
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        id
    }

    pub async fn delivery(&self, campaign_id: Uuid, phone: &str) -> Delivery {
        let id = delivery_id(campaign_id, &Phone::parse(phone, "ID").unwrap());
        let mut conn = self.pool.acquire().await.unwrap();
        let mut found = store::load_many::<Delivery>(&mut conn, std::slice::from_ref(&id))
            .await
            .unwrap();
        found.remove(&id).expect("delivery exists").0
    }

    pub async fn campaign_state(&self, campaign_id: Uuid) -> Campaign {
        let id = campaign_id.to_string();
        let mut conn = self.pool.acquire().await.unwrap();
        let mut found = store::load_many::<Campaign>(&mut conn, std::slice::from_ref(&id))
            .await
            .unwrap();
        found.remove(&id).expect("campaign exists").0
    }

    /// The reasons recorded in a delivery's `DeliveryFailed` events.
    pub async fn failure_reasons(&self, campaign_id: Uuid, phone: &str) -> Vec<String> {
        let id = delivery_id(campaign_id, &Phone::parse(phone, "ID").unwrap());
        let payloads: Vec<serde_json::Value> = sqlx::query_scalar(
            "SELECT payload::jsonb FROM events
              WHERE aggregate_id = $1 AND event_type = 'DeliveryFailed' ORDER BY sequence",
        )
        .bind(&id)
        .fetch_all(&self.pool)
        .await
        .unwrap();
        payloads
            .iter()
            .filter_map(|p| p["DeliveryFailed"]["reason"].as_str().map(str::to_owned))
            .collect()
    }

    pub async fn queued_rows(&self, campaign_id: Uuid) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM dispatch_queue WHERE campaign_id = $1")
            .bind(campaign_id)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}
