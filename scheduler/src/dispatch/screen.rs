//! The claim's safety screen for opt-outs and the frequency cap (docs/decisions/0064,
//! docs/safe-sending.md): a campaign recipient claimed for sending whose phone opted out, or who
//! already had the tenant's frequency cap of campaign messages, is not sent. It becomes
//! `skipped` (`error: "opted_out"` / `"frequency_cap"`) and leaves the queue, in the claim's own
//! transaction. Single sends and chat replies are never screened (conversations are not
//! marketing).
//!
//! Set-based: one query for the batch's opt-outs, one for its tenants' caps, and only when a
//! tenant has a cap, one statement that locks and reads its phones' counts and one that writes
//! them. The counts are rows of `frequency_counts` locked in one global order, so two instances
//! claiming the same phone for two campaigns take turns and never pass the cap together. Only a
//! recipient's first claim counts (a retry or an in-doubt resend is the same message).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use herald_domain::delivery::{Delivery, DeliveryCommand};
use herald_domain::store;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{delete_rows, Claimed};

pub const OPTED_OUT: &str = "opted_out";
pub const FREQUENCY_CAP: &str = "frequency_cap";

/// Takes out of `claimed` what must not be sent, recording each as skipped. Returns what is kept
/// and the campaigns that lost recipients (one may have lost its last: the caller completes it).
pub(super) async fn screen(
    tx: &mut PgConnection,
    claimed: Vec<Claimed>,
) -> anyhow::Result<(Vec<Claimed>, Vec<Uuid>)> {
    let campaign_rows: Vec<&Claimed> = claimed.iter().filter(|c| c.is_campaign()).collect();
    if campaign_rows.is_empty() {
        return Ok((claimed, vec![]));
    }
    let opted_out = opted_out(tx, &campaign_rows).await?;
    let capped = over_cap(tx, &campaign_rows, &opted_out).await?;
    if opted_out.is_empty() && capped.is_empty() {
        return Ok((claimed, vec![]));
    }
    let now = Utc::now();
    let mut keep = Vec::with_capacity(claimed.len());
    let (mut commands, mut gone_c, mut gone_p) = (Vec::new(), Vec::new(), Vec::new());
    for c in claimed {
        let reason = if !c.is_campaign() {
            None
        } else if opted_out.contains(&(c.tenant_id, c.phone.clone())) {
            Some(OPTED_OUT)
        } else if capped.contains(&(c.campaign_id, c.phone.clone())) {
            Some(FREQUENCY_CAP)
        } else {
            None
        };
        match reason {
            None => keep.push(c),
            Some(reason) => {
                let skip = DeliveryCommand::Skip {
                    reason: reason.to_string(),
                    at: now,
                };
                commands.push((c.delivery_id(), skip));
                gone_c.push(c.campaign_id);
                gone_p.push(c.phone);
            }
        }
    }
    metrics::counter!("herald_dispatch_screened_total").increment(commands.len() as u64);
    for outcome in store::execute_batch::<Delivery>(&mut *tx, commands, &()).await? {
        if let Err(e) = outcome {
            // final already (a receipt, a cancel): it leaves the queue all the same
            tracing::debug!(error = %e, "screened recipient not skipped");
        }
    }
    delete_rows(&mut *tx, &gone_c, &gone_p).await?;
    let mut campaigns = gone_c;
    campaigns.sort();
    campaigns.dedup();
    Ok((keep, campaigns))
}

/// The (tenant, phone) pairs of the batch that opted out, in one query.
async fn opted_out(
    tx: &mut PgConnection,
    rows: &[&Claimed],
) -> sqlx::Result<HashSet<(Uuid, String)>> {
    let tenants: Vec<Uuid> = rows.iter().map(|c| c.tenant_id).collect();
    let phones: Vec<&str> = rows.iter().map(|c| c.phone.as_str()).collect();
    let found = sqlx::query(
        "SELECT DISTINCT o.tenant_id, o.phone
           FROM opt_outs o JOIN UNNEST($1::uuid[], $2::text[]) AS k(t, p)
             ON o.tenant_id = k.t AND o.phone = k.p",
    )
    .bind(&tenants)
    .bind(&phones)
    .fetch_all(&mut *tx)
    .await?;
    found
        .into_iter()
        .map(|r| Ok((r.try_get("tenant_id")?, r.try_get("phone")?)))
        .collect()
}

/// The (campaign, phone) rows of the batch over their tenant's frequency cap; the others' first
/// sends are counted.
async fn over_cap(
    tx: &mut PgConnection,
    rows: &[&Claimed],
    opted_out: &HashSet<(Uuid, String)>,
) -> sqlx::Result<HashSet<(Uuid, String)>> {
    let mut tenants: Vec<Uuid> = rows.iter().map(|c| c.tenant_id).collect();
    tenants.sort();
    tenants.dedup();
    let caps: HashMap<Uuid, (i32, i32)> = sqlx::query(
        "SELECT tenant_id, messages, hours FROM frequency_caps WHERE tenant_id = ANY($1)",
    )
    .bind(&tenants)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|r| {
        Ok((
            r.try_get("tenant_id")?,
            (r.try_get("messages")?, r.try_get("hours")?),
        ))
    })
    .collect::<sqlx::Result<_>>()?;
    if caps.is_empty() {
        return Ok(HashSet::new());
    }
    // first claims of capped tenants' phones that are still to be sent
    let counted: Vec<&&Claimed> = rows
        .iter()
        .filter(|c| c.needs_quota() && caps.contains_key(&c.tenant_id))
        .filter(|c| !opted_out.contains(&(c.tenant_id, c.phone.clone())))
        .collect();
    if counted.is_empty() {
        return Ok(HashSet::new());
    }
    let mut keys: Vec<(Uuid, &str)> = counted
        .iter()
        .map(|c| (c.tenant_id, c.phone.as_str()))
        .collect();
    keys.sort();
    keys.dedup();
    let (kt, kp): (Vec<Uuid>, Vec<&str>) = keys.into_iter().unzip();
    // insert-or-touch locks each row until the claim commits, in the sorted order above
    let locked = sqlx::query(
        "INSERT INTO frequency_counts AS f (tenant_id, phone)
         SELECT t, p FROM UNNEST($1::uuid[], $2::text[]) WITH ORDINALITY AS k(t, p, n) ORDER BY n
         ON CONFLICT (tenant_id, phone) DO UPDATE SET sends = f.sends
         RETURNING f.tenant_id, f.phone, f.sends, now() AS now",
    )
    .bind(&kt)
    .bind(&kp)
    .fetch_all(&mut *tx)
    .await?;
    let mut sends: HashMap<(Uuid, String), Vec<DateTime<Utc>>> = HashMap::new();
    let mut now = Utc::now();
    for r in locked {
        now = r.try_get("now")?;
        sends.insert(
            (r.try_get("tenant_id")?, r.try_get("phone")?),
            r.try_get("sends")?,
        );
    }
    let mut over = HashSet::new();
    let (mut new_t, mut new_p, mut new_s) = (Vec::new(), Vec::new(), Vec::new());
    for c in counted {
        let Some(&(messages, hours)) = caps.get(&c.tenant_id) else {
            continue;
        };
        let since = now - Duration::hours(i64::from(hours));
        let times = sends.entry((c.tenant_id, c.phone.clone())).or_default();
        times.retain(|t| *t > since);
        if times.len() >= usize::try_from(messages).unwrap_or(0) {
            over.insert((c.campaign_id, c.phone.clone()));
        } else {
            times.push(now);
        }
    }
    for ((tenant, phone), times) in sends {
        new_t.push(tenant);
        new_p.push(phone);
        new_s.push(serde_json::to_string(&times).unwrap_or_else(|_| "[]".into()));
    }
    sqlx::query(
        "UPDATE frequency_counts f
            SET sends = ARRAY(SELECT jsonb_array_elements_text(k.s::jsonb)::timestamptz)
           FROM UNNEST($1::uuid[], $2::text[], $3::text[]) AS k(t, p, s)
          WHERE f.tenant_id = k.t AND f.phone = k.p",
    )
    .bind(&new_t)
    .bind(&new_p)
    .bind(&new_s)
    .execute(&mut *tx)
    .await?;
    Ok(over)
}
