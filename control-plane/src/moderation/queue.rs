//! The review queue's items: what puts an image in front of an operator
//! (a classifier holding an upload, a report, a DMCA notice). Deciding
//! them is [`super::review`]'s.

use sqlx::AnyConnection;

use crate::secrets::new_sortable_id;

/// Put an image in the queue (`source`: classifier, report, dmca).
pub async fn open(
    conn: &mut AnyConnection,
    image_id: &str,
    source: &str,
    category: &str,
    source_id: Option<&str>,
    now: i64,
) -> Result<String, sqlx::Error> {
    let id = new_sortable_id("rev");
    sqlx::query(
        "INSERT INTO review_items (id, image_id, source, category, source_id, created_at, resolved_at, resolution) \
         VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL)",
    )
    .bind(&id)
    .bind(image_id)
    .bind(source)
    .bind(category)
    .bind(source_id.map(str::to_string))
    .bind(now)
    .execute(conn)
    .await?;
    Ok(id)
}
