//! Which destinations receive a conversion, and as what.

use clicktrail_domain::PropertyId;
use clicktrail_store::deliveries::{PlannedConversion, PlannedDelivery, insert_planned_many};
use clicktrail_store::{StoreError, Tx};

use super::Delivery;
use crate::conversions::{Outbox, QueueItem};

/// The deliveries to queue for one validated conversion: one per
/// destination of the property whose event mapping wants `event_name`
/// (our conversion event: `Lead`, `Purchase`...), with the platform's name
/// for it. None when `send_to_destinations` is false (the integration's
/// mapping said so).
///
/// Paused destinations and those needing attention are planned too: their
/// rows wait until the destination is active again. A destination whose
/// stored configuration cannot be read is left out (it is flagged by the
/// workers and shown as needing attention).
///
/// Call it before or inside the conversion's transaction, then store the
/// result with `clicktrail_store::deliveries::insert_planned` in that
/// transaction.
pub async fn plan(
    state: &Delivery,
    property_id: &PropertyId,
    event_name: &str,
    send_to_destinations: bool,
) -> Result<Vec<PlannedDelivery>, StoreError> {
    if !send_to_destinations {
        return Ok(Vec::new());
    }
    let dests = state.destinations_of(property_id.as_str()).await?;
    let mut planned = Vec::new();
    for d in &dests.list {
        let Ok(dest) = &d.parsed else {
            tracing::warn!(
                destination = %d.row.id,
                kind = %d.row.kind,
                "destination configuration unreadable; conversion not queued for it"
            );
            continue;
        };
        if let Some(m) = dest.map_event(event_name) {
            planned.push(PlannedDelivery {
                destination_id: d.row.id.clone(),
                event_name: m.event_name,
                conversion_action: m.conversion_action,
            });
        }
    }
    Ok(planned)
}

/// [`plan`] and `insert_planned` for a batch of validated conversions, in
/// one statement: call it inside the transaction that records them (the
/// conversion writer's group commit), then [`super::Delivery::wake`]
/// after the commit. Returns how many deliveries were queued.
pub async fn queue_in(
    state: &Delivery,
    tx: &mut Tx<'_>,
    items: &[QueueItem<'_>],
) -> Result<u64, StoreError> {
    let mut plans: Vec<Vec<PlannedDelivery>> = Vec::with_capacity(items.len());
    for it in items {
        plans.push(
            plan(
                state,
                it.property_id,
                it.event_name,
                it.send_to_destinations,
            )
            .await?,
        );
    }
    let convs: Vec<PlannedConversion<'_>> = items
        .iter()
        .zip(&plans)
        .filter(|(_, p)| !p.is_empty())
        .map(|(it, p)| PlannedConversion {
            conversion_id: it.conversion_id,
            property_id: it.property_id.as_str(),
            deliveries: p,
        })
        .collect();
    insert_planned_many(tx, &convs).await
}

impl Outbox for Delivery {
    fn queue_in<'a>(
        &'a self,
        tx: &'a mut Tx<'_>,
        items: &'a [QueueItem<'a>],
    ) -> futures::future::BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(queue_in(self, tx, items))
    }

    fn committed(&self) {
        self.wake();
    }
}
