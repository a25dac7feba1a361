//! What a tenant sends and gets back (`POST /api/v1/vectors/upsert` and `/query`),
//! checked here, before any backend sees it: every refusal names the field.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::problem::Problem;

/// Records in one upsert, and query embeddings in one query.
pub const MAX_RECORDS: usize = 1000;
pub const MAX_QUERIES: usize = 100;
/// pgvector's HNSW index takes at most 2,000 dimensions; one limit for both backends.
pub const MAX_DIMENSION: usize = 2000;
pub const MAX_ID_LEN: usize = 256;
pub const MAX_RESULTS: u32 = 100;
pub const DEFAULT_RESULTS: u32 = 10;

/// `POST /api/v1/vectors/upsert`: records added to the tenant's collection, or
/// replaced where their id exists. The lists line up: `embeddings[i]`,
/// `metadatas[i]` and `documents[i]` belong to `ids[i]`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = VectorUpsertRequest)]
pub struct UpsertRequest {
    /// 1 to 1000 distinct ids, each 1 to 256 characters.
    pub ids: Vec<String>,
    /// One embedding per id, all of one dimension (1 to 2000), finite numbers; the
    /// collection's dimension is fixed by its first records.
    pub embeddings: Vec<Vec<f32>>,
    /// One object (or null) per id; values are strings, numbers or booleans.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub metadatas: Option<Vec<Option<Map<String, Value>>>>,
    /// One text (or null) per id.
    #[serde(default)]
    pub documents: Option<Vec<Option<String>>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = VectorUpsertResult)]
pub struct UpsertResult {
    pub upserted: usize,
}

/// `POST /api/v1/vectors/query`: the nearest records (L2 distance) to each embedding.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = VectorQueryRequest)]
pub struct QueryRequest {
    /// 1 to 100 query embeddings, of the collection's dimension.
    pub embeddings: Vec<Vec<f32>>,
    /// Matches per query embedding, 1 to 100 [default: 10].
    #[serde(default)]
    pub n_results: Option<u32>,
}

impl QueryRequest {
    pub fn n_results(&self) -> u32 {
        self.n_results.unwrap_or(DEFAULT_RESULTS)
    }
}

/// One match of a query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = VectorMatch)]
pub struct Match {
    pub id: String,
    pub distance: f64,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    pub document: Option<String>,
}

/// The matches of each query embedding, nearest first (`results[i]` for
/// `embeddings[i]`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = VectorQueryResult)]
pub struct QueryResult {
    pub results: Vec<Vec<Match>>,
}

/// Every embedding non-empty, finite and of one dimension.
fn check_embeddings(field: &str, embeddings: &[Vec<f32>]) -> Result<usize, Problem> {
    let Some(first) = embeddings.first() else {
        return Err(Problem::bad_field(
            field,
            format!("{field} must not be empty"),
        ));
    };
    let dimension = first.len();
    for (i, e) in embeddings.iter().enumerate() {
        let at = format!("{field}[{i}]");
        if e.is_empty() {
            return Err(Problem::bad_field(
                &at,
                format!("{at} is empty: an embedding has at least one number"),
            ));
        }
        if e.len() > MAX_DIMENSION {
            return Err(Problem::bad_field(
                &at,
                format!("{at} has {} numbers; at most {MAX_DIMENSION}", e.len()),
            ));
        }
        if e.len() != dimension {
            return Err(Problem::bad_field(
                &at,
                format!(
                    "dimension mismatch: {at} has {} numbers, {field}[0] has {dimension}",
                    e.len()
                ),
            ));
        }
        if let Some(j) = e.iter().position(|x| !x.is_finite()) {
            return Err(Problem::bad_field(
                &at,
                format!("{at}[{j}] is not a finite 32-bit number"),
            ));
        }
    }
    Ok(dimension)
}

fn same_length<T>(field: &str, list: &Option<Vec<T>>, ids: usize) -> Result<(), Problem> {
    match list {
        Some(l) if l.len() != ids => Err(Problem::bad_field(
            field,
            format!(
                "{field} has {} entries and ids has {ids}: give one per id",
                l.len()
            ),
        )),
        _ => Ok(()),
    }
}

impl UpsertRequest {
    pub fn validate(&self) -> Result<(), Problem> {
        if self.ids.is_empty() {
            return Err(Problem::bad_field("ids", "ids must not be empty"));
        }
        if self.ids.len() > MAX_RECORDS {
            return Err(Problem::bad_field(
                "ids",
                format!(
                    "at most {MAX_RECORDS} records per upsert, got {}",
                    self.ids.len()
                ),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, id) in self.ids.iter().enumerate() {
            if id.is_empty() || id.chars().count() > MAX_ID_LEN {
                return Err(Problem::bad_field(
                    &format!("ids[{i}]"),
                    format!("ids[{i}] must be 1 to {MAX_ID_LEN} characters"),
                ));
            }
            if !seen.insert(id) {
                return Err(Problem::bad_field(
                    &format!("ids[{i}]"),
                    format!("ids[{i}] {id:?} is given twice"),
                ));
            }
        }
        if self.embeddings.len() != self.ids.len() {
            return Err(Problem::bad_field(
                "embeddings",
                format!(
                    "embeddings has {} entries and ids has {}: give one per id",
                    self.embeddings.len(),
                    self.ids.len()
                ),
            ));
        }
        check_embeddings("embeddings", &self.embeddings)?;
        same_length("metadatas", &self.metadatas, self.ids.len())?;
        same_length("documents", &self.documents, self.ids.len())?;
        for (i, m) in self.metadatas.iter().flatten().enumerate() {
            for (k, v) in m.iter().flatten() {
                let at = format!("metadatas[{i}].{k}");
                if k.is_empty() || k.starts_with('#') || k.starts_with("chroma:") {
                    return Err(Problem::bad_field(
                        &at,
                        format!(
                            "{at}: keys are not empty and start with neither '#' nor 'chroma:'"
                        ),
                    ));
                }
                if !(v.is_string() || v.is_number() || v.is_boolean()) {
                    return Err(Problem::bad_field(
                        &at,
                        format!("{at} must be a string, a number or a boolean"),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl QueryRequest {
    pub fn validate(&self) -> Result<(), Problem> {
        if self.embeddings.len() > MAX_QUERIES {
            return Err(Problem::bad_field(
                "embeddings",
                format!(
                    "at most {MAX_QUERIES} query embeddings, got {}",
                    self.embeddings.len()
                ),
            ));
        }
        check_embeddings("embeddings", &self.embeddings)?;
        if !(1..=MAX_RESULTS).contains(&self.n_results()) {
            return Err(Problem::bad_field(
                "n_results",
                format!("n_results must be between 1 and {MAX_RESULTS}"),
            ));
        }
        Ok(())
    }
}

/// Chroma's columnar answer (`ids[q][i]`, `distances[q][i]`, ...) as matches.
pub(super) fn result_from_chroma(v: &Value) -> Result<QueryResult, String> {
    let ids = v["ids"]
        .as_array()
        .ok_or_else(|| format!("query answer without ids: {v}"))?;
    let mut results = Vec::with_capacity(ids.len());
    for (q, row) in ids.iter().enumerate() {
        let row = row.as_array().ok_or("ids is not a list of lists")?;
        let mut matches = Vec::with_capacity(row.len());
        for (i, id) in row.iter().enumerate() {
            let cell = |column: &str| {
                v[column]
                    .get(q)
                    .and_then(|r| r.get(i))
                    .cloned()
                    .filter(|c| !c.is_null())
            };
            matches.push(Match {
                id: id.as_str().unwrap_or_default().to_string(),
                distance: cell("distances")
                    .and_then(|d| d.as_f64())
                    .unwrap_or(f64::NAN),
                metadata: cell("metadatas"),
                document: cell("documents").and_then(|d| d.as_str().map(str::to_string)),
            });
        }
        results.push(matches);
    }
    Ok(QueryResult { results })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn upsert(v: Value) -> UpsertRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (json!({"ids": [], "embeddings": []}), "ids"),
            (json!({"ids": ["a"], "embeddings": [[]]}), "embeddings[0]"),
            (
                json!({"ids": ["a", "b"], "embeddings": [[1.0], [1.0, 2.0]]}),
                "embeddings[1]",
            ),
            (
                json!({"ids": ["a", "a"], "embeddings": [[1.0], [2.0]]}),
                "ids[1]",
            ),
            (
                json!({"ids": ["a"], "embeddings": [[1.0], [2.0]]}),
                "embeddings",
            ),
            (
                json!({"ids": ["a"], "embeddings": [[1.0]], "documents": []}),
                "documents",
            ),
            (
                json!({"ids": ["a"], "embeddings": [[1.0]], "metadatas": [{"k": [1]}]}),
                "metadatas[0].k",
            ),
        ];
        for (body, field) in cases {
            let p = upsert(body.clone()).validate().unwrap_err();
            assert_eq!(p.field.as_deref(), Some(field), "{body}: {}", p.message);
        }
        let q: QueryRequest =
            serde_json::from_value(json!({"embeddings": [[1.0]], "n_results": 0})).unwrap();
        assert_eq!(
            q.validate().unwrap_err().field.as_deref(),
            Some("n_results")
        );
        let q: QueryRequest = serde_json::from_value(json!({"embeddings": []})).unwrap();
        assert_eq!(
            q.validate().unwrap_err().field.as_deref(),
            Some("embeddings")
        );
    }

    #[test]
    fn chroma_answers_become_matches() {
        let v = json!({"ids": [["a", "b"]], "distances": [[0.0, 2.0]],
                       "metadatas": [[{"k": "v"}, null]], "documents": [["doc a", null]]});
        let r = result_from_chroma(&v).unwrap();
        assert_eq!(r.results[0][0].id, "a");
        assert_eq!(r.results[0][0].metadata, Some(json!({"k": "v"})));
        assert_eq!(r.results[0][1].document, None);
        assert_eq!(r.results[0][1].distance, 2.0);
    }
}
