//! A checksum of the read models that does not depend on document or participant order, so a
//! replay of the topic can be shown to change nothing.

use anyhow::Result;
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::Database;
use sha2::{Digest, Sha256};

use crate::read_model::Collection;

/// SHA-256 over `users`, `activities` and `statistics`, documents sorted by `_id`, participant
/// lists sorted by event, and statistics' `updated_at` (a bookkeeping time) left out.
pub async fn read_models(db: &Database) -> Result<String> {
    let mut hasher = Sha256::new();
    for collection in Collection::ALL {
        let name = collection.name();
        let mut docs: Vec<Document> = db
            .collection::<Document>(name)
            .find(doc! {})
            .await?
            .try_collect()
            .await?;
        docs.sort_by_key(id_key);
        hasher.update(name.as_bytes());
        for mut d in docs {
            normalize(collection, &mut d);
            hasher.update(
                Bson::Document(d)
                    .into_relaxed_extjson()
                    .to_string()
                    .as_bytes(),
            );
            hasher.update(b"\n");
        }
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// Orders a document's keys, and those of the documents in it, by name.
fn sort_keys(d: &mut Document) {
    let mut entries: Vec<(String, Bson)> = std::mem::take(d).into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (k, mut v) in entries {
        if let Bson::Document(inner) = &mut v {
            sort_keys(inner);
        }
        d.insert(k, v);
    }
}

fn id_key(d: &Document) -> String {
    d.get("_id").map(|b| b.to_string()).unwrap_or_default()
}

fn normalize(collection: Collection, d: &mut Document) {
    if collection == Collection::Statistics {
        d.remove("updated_at");
        // Counters and marks are added to these documents as batches happen to bring them:
        // their key order is no part of the content.
        sort_keys(d);
    }
    if let Ok(p) = d.get_document_mut("participants") {
        if let Ok(list) = p.get_array_mut("list") {
            list.sort_by_key(|e| {
                e.as_document()
                    .and_then(|x| x.get_str("source_event_id").ok())
                    .unwrap_or_default()
                    .to_owned()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_key_order_and_bookkeeping_time_do_not_count() {
        let mut a = doc! { "_id": "global", "updated_at": 1,
        "events": { "UserCreated": 5_i64, "ParticipantJoined": 2_i64 },
        "counted_through": { "p1": 9_i64, "p0": 4_i64 } };
        let mut b = doc! { "_id": "global",
        "counted_through": { "p0": 4_i64, "p1": 9_i64 },
        "events": { "ParticipantJoined": 2_i64, "UserCreated": 5_i64 }, "updated_at": 2 };
        normalize(Collection::Statistics, &mut a);
        normalize(Collection::Statistics, &mut b);
        assert_eq!(
            Bson::Document(a).into_relaxed_extjson().to_string(),
            Bson::Document(b).into_relaxed_extjson().to_string()
        );
    }
}
