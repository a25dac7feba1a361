//! The Chroma backend, over Chroma's HTTP API (v2). Each tenant has the seed's
//! collection, `tenant_<id>` with `tenant_id` in its metadata, in Chroma's default
//! tenant and database. (Not a Chroma tenant and database per berqenas tenant: Chroma's
//! API cannot delete a tenant, so a purge would leave one behind for every tenant
//! ever made; a collection is created and deleted whole.)
//!
//! Upserts and queries address a collection by its Chroma id; the id of each name is
//! kept in memory, and looked up again when Chroma says it is gone (a collection
//! deleted and made again has another id).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{collection_name, records, Backend, BoxFuture, Error, Target};
use super::{QueryRequest, QueryResult, UpsertRequest, UpsertResult};
use crate::problem::Problem;

const TENANT: &str = "default_tenant";
const DATABASE: &str = "default_database";

/// A Chroma server.
pub struct Chroma {
    base: String,
    http: reqwest::Client,
    ids: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for Chroma {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chroma").field("url", &self.base).finish()
    }
}

impl Chroma {
    /// `url`: the server's base URL (`http://chroma:8000`). Refused unless it is an
    /// http(s) URL without a path, query or credentials.
    pub fn new(url: &str) -> Result<Self, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("--vector-url {url:?}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!(
                "--vector-url {url:?}: must be an http or https URL"
            ));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("--vector-url must not carry credentials".into());
        }
        if parsed.path() != "/" || parsed.query().is_some() {
            return Err(format!(
                "--vector-url {url:?}: give the server's base URL, without a path"
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            base: url.trim_end_matches('/').to_string(),
            http,
            ids: Mutex::new(HashMap::new()),
        })
    }

    fn collections_url(&self) -> String {
        format!(
            "{}/api/v2/tenants/{TENANT}/databases/{DATABASE}/collections",
            self.base
        )
    }

    /// One call; a 2xx answer's JSON (null when empty), else the status and Chroma's
    /// message.
    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Result<Value, (StatusCode, String)>, Error> {
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.map_err(|e| {
            let connect = e.is_connect();
            let shown = e.without_url().to_string();
            if connect {
                Error::NotConnected(shown)
            } else {
                Error::Unreachable(shown)
            }
        })?;
        let status = res.status();
        let text = res
            .text()
            .await
            .map_err(|e| Error::Unreachable(e.without_url().to_string()))?;
        let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(Ok(parsed));
        }
        let message = parsed["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| text.chars().take(300).collect());
        Ok(Err((status, message)))
    }

    /// The collection's Chroma id (`None`: there is none of that name).
    async fn lookup(&self, name: &str) -> Result<Option<String>, Error> {
        if let Some(id) = self.cached(name) {
            return Ok(Some(id));
        }
        let url = format!("{}/{name}", self.collections_url());
        match self.call(Method::GET, &url, None).await? {
            Ok(v) => {
                let id = v["id"]
                    .as_str()
                    .ok_or_else(|| Error::Backend(format!("collection {name}: no id in {v}")))?
                    .to_string();
                self.remember(name, Some(&id));
                Ok(Some(id))
            }
            Err((StatusCode::NOT_FOUND, _)) => Ok(None),
            Err((s, m)) => Err(Error::Backend(format!("GET collection {name}: {s} {m}"))),
        }
    }

    fn cached(&self, name: &str) -> Option<String> {
        self.ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    fn remember(&self, name: &str, id: Option<&str>) {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        match id {
            Some(id) => ids.insert(name.to_string(), id.to_string()),
            None => ids.remove(name),
        };
    }

    /// Calls `/{id}/{action}` on the tenant's collection, looking its id up again once
    /// if Chroma no longer knows the remembered one.
    async fn on_collection(&self, t: &Target, action: &str, body: &Value) -> Result<Value, Error> {
        let name = collection_name(t.tenant_id);
        for _ in 0..2 {
            let Some(id) = self.lookup(&name).await? else {
                return Err(Error::Rejected(missing()));
            };
            let url = format!("{}/{id}/{action}", self.collections_url());
            match self.call(Method::POST, &url, Some(body)).await? {
                Ok(v) => return Ok(v),
                Err((StatusCode::NOT_FOUND, _)) => self.remember(&name, None),
                Err((s, m)) if s.is_client_error() => {
                    // Chroma's own check of the request (a dimension that differs from
                    // the collection's): the caller's mistake, told as Chroma says it.
                    return Err(Error::Rejected(Problem::bad_field(
                        "embeddings",
                        format!("the vector store refused the records: {m}"),
                    )));
                }
                Err((s, m)) => return Err(Error::Backend(format!("{action} {name}: {s} {m}"))),
            }
        }
        Err(Error::Rejected(missing()))
    }
}

fn missing() -> Problem {
    Problem::new(
        crate::problem::Kind::NotFound,
        "no_vector_store",
        "this tenant's vector collection does not exist",
    )
}

impl Backend for Chroma {
    fn name(&self) -> &'static str {
        "chroma"
    }

    fn collection(&self, t: &Target) -> Result<String, Error> {
        Ok(collection_name(t.tenant_id))
    }

    fn create<'a>(&'a self, t: &'a Target) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let name = collection_name(t.tenant_id);
            let body = json!({
                "name": name,
                "metadata": {"tenant_id": t.tenant_id.to_string(), "managed_by": "berqenas"},
                "get_or_create": true,
            });
            match self
                .call(Method::POST, &self.collections_url(), Some(&body))
                .await?
            {
                Ok(v) => {
                    // An existing collection of the name must be this tenant's.
                    let owner = v["metadata"]["tenant_id"].as_str();
                    if owner != Some(t.tenant_id.to_string().as_str()) {
                        return Err(Error::Backend(format!(
                            "collection {name} exists with tenant_id {owner:?}"
                        )));
                    }
                    self.remember(&name, v["id"].as_str());
                    Ok(())
                }
                Err((s, m)) => Err(Error::Backend(format!("create {name}: {s} {m}"))),
            }
        })
    }

    fn delete<'a>(&'a self, t: &'a Target) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let name = collection_name(t.tenant_id);
            let url = format!("{}/{name}", self.collections_url());
            let answer = self.call(Method::DELETE, &url, None).await?;
            self.remember(&name, None);
            match answer {
                Ok(_) | Err((StatusCode::NOT_FOUND, _)) => Ok(()),
                Err((s, m)) => Err(Error::Backend(format!("delete {name}: {s} {m}"))),
            }
        })
    }

    fn exists<'a>(&'a self, t: &'a Target) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let name = collection_name(t.tenant_id);
            self.remember(&name, None);
            Ok(self.lookup(&name).await?.is_some())
        })
    }

    fn upsert<'a>(&'a self, t: &'a Target, r: &'a UpsertRequest) -> BoxFuture<'a, UpsertResult> {
        Box::pin(async move {
            let mut body = json!({"ids": r.ids, "embeddings": r.embeddings});
            if let Some(m) = &r.metadatas {
                body["metadatas"] = json!(m);
            }
            if let Some(d) = &r.documents {
                body["documents"] = json!(d);
            }
            self.on_collection(t, "upsert", &body).await?;
            Ok(UpsertResult {
                upserted: r.ids.len(),
            })
        })
    }

    fn query<'a>(&'a self, t: &'a Target, q: &'a QueryRequest) -> BoxFuture<'a, QueryResult> {
        Box::pin(async move {
            let body = json!({
                "query_embeddings": q.embeddings,
                "n_results": q.n_results(),
                "include": ["metadatas", "documents", "distances"],
            });
            let v = self.on_collection(t, "query", &body).await?;
            records::result_from_chroma(&v).map_err(Error::Backend)
        })
    }
}
