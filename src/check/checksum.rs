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

fn id_key(d: &Document) -> String {
    d.get("_id").map(|b| b.to_string()).unwrap_or_default()
}

fn normalize(collection: Collection, d: &mut Document) {
    if collection == Collection::Statistics {
        d.remove("updated_at");
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
