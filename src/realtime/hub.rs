//! The fan-out: one feed per tenant with subscribers on this server. The feed's task
//! reads the tenant's new events once (with the server's role, never a tenant's) and
//! hands each to every subscriber through a broadcast channel; a subscriber that
//! resumes (`Last-Event-ID`) or falls behind reads what it missed from the table
//! itself, then skips what it already has: each event once, in id order, no gap.
//!
//! Authorization is the caller's, once, at subscribe: a feed only ever holds one
//! tenant's events, and a subscription only ever reads its tenant's feed.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use super::place::{self, Place, BATCH};
use super::{Event, Filter, WAKE_CHANNEL};
use crate::platform::Platform;
use crate::store::tenants::Tenant;

/// Without a notification, how often a feed looks for new events.
const POLL: Duration = Duration::from_millis(1000);
/// How often a feed checks that its tenant may still stream.
const CHECK: Duration = Duration::from_secs(1);
/// A feed without subscribers stops after this long.
const IDLE: Duration = Duration::from_secs(30);
/// Events buffered per feed for subscribers that are behind; past it they read the table.
const BUFFER: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("realtime_max_subscribers ({limit}) reached: the tenant has {limit} open streams on this server")]
    TooMany { limit: usize },
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Place(#[from] place::Error),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Gate(#[from] super::gate::Error),
}

struct Feed {
    place: Place,
    tx: broadcast::Sender<Arc<Event>>,
    /// The last id handed to the broadcast.
    cursor: AtomicI64,
    subscribers: AtomicUsize,
    /// Set when the tenant may no longer stream (suspended, deleted) or the server stops.
    closed: watch::Sender<bool>,
    /// Database mode: a connection to the tenant's database (also its LISTEN).
    db: Option<Arc<tokio_postgres::Client>>,
    /// Database mode: that connection's wake-ups (else the hub's control database's).
    wake: Option<watch::Sender<u64>>,
    pool: deadpool_postgres::Pool,
}

fn feed_wake(
    db: &Option<Arc<tokio_postgres::Client>>,
    wake: watch::Sender<u64>,
) -> Option<watch::Sender<u64>> {
    db.as_ref().map(|_| wake)
}

impl Feed {
    async fn read(&self, after: i64) -> Result<Vec<Event>, Error> {
        Ok(match &self.db {
            Some(c) => self.place.read(c, after).await?,
            None => {
                let c = self.pool.get().await?;
                self.place.read(&c, after).await?
            }
        })
    }

    async fn latest(&self) -> Result<i64, Error> {
        Ok(match &self.db {
            Some(c) => self.place.latest(c).await?,
            None => {
                let c = self.pool.get().await?;
                self.place.latest(&c).await?
            }
        })
    }
}

/// Every feed of this server. Cheap to make; the first subscriber starts the listener.
pub struct Hub {
    feeds: Mutex<HashMap<Uuid, Arc<Feed>>>,
    listening: AtomicBool,
    /// Bumped at every notification on the control database's wake channel.
    control_wake: watch::Sender<u64>,
    stop: watch::Sender<bool>,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            feeds: Mutex::default(),
            listening: AtomicBool::new(false),
            control_wake: watch::channel(0).0,
            stop: watch::channel(false).0,
        }
    }
}

/// Subscribers per tenant on this server (for `/metrics`).
pub type Counts = Vec<(Uuid, usize)>;

impl Hub {
    /// Ends every stream (the server is stopping).
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
    }

    pub fn subscriber_counts(&self) -> Counts {
        let feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        feeds
            .iter()
            .map(|(id, f)| (*id, f.subscribers.load(Ordering::Relaxed)))
            .collect()
    }

    /// This server's open streams of a tenant.
    pub fn subscribers_of(&self, tenant: Uuid) -> usize {
        let feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        feeds
            .get(&tenant)
            .map_or(0, |f| f.subscribers.load(Ordering::Relaxed))
    }

    fn listen(self: &Arc<Self>, p: &Platform) {
        if self.listening.swap(true, Ordering::SeqCst) {
            return;
        }
        tokio::spawn(listen(
            p.config.clone(),
            self.control_wake.clone(),
            self.stop.subscribe(),
        ));
        tokio::spawn(read_control(self.clone(), p.pool.clone()));
    }

    /// A subscription to `t`'s events matching `filter`, after `last_id` (the
    /// `Last-Event-ID`; `None`: from now on). Refused past `max` on this server.
    pub async fn subscribe(
        self: &Arc<Self>,
        p: &Platform,
        t: &Tenant,
        max: usize,
        filter: Filter,
        last_id: Option<i64>,
    ) -> Result<Subscription, Error> {
        self.listen(p);
        let existing = {
            let feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
            feeds.get(&t.id).cloned()
        };
        let feed = match existing {
            Some(f) => f,
            None => {
                let fresh = self.open_feed(p, t).await?;
                let mut feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
                match feeds.get(&t.id) {
                    // Another subscriber made one meanwhile: use it (ours is dropped).
                    Some(f) => f.clone(),
                    None => {
                        feeds.insert(t.id, fresh.clone());
                        tokio::spawn(run(self.clone(), fresh.clone(), p.pool.clone()));
                        fresh
                    }
                }
            }
        };
        {
            // Counted under the map's lock: a feed leaves the map only with none.
            let _feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
            if feed.subscribers.load(Ordering::SeqCst) >= max {
                return Err(Error::TooMany { limit: max });
            }
            feed.subscribers.fetch_add(1, Ordering::SeqCst);
        }
        // Subscribed before the cursor is read: nothing after it can be missed.
        let rx = feed.tx.subscribe();
        let closed = feed.closed.subscribe();
        let (delivered, backfill) = match last_id {
            Some(id) => (id.max(0), true),
            None => (feed.cursor.load(Ordering::SeqCst), false),
        };
        Ok(Subscription {
            feed,
            rx,
            closed,
            stop: self.stop.subscribe(),
            filter,
            delivered,
            backfill,
            backlog: VecDeque::new(),
        })
    }

    async fn open_feed(&self, p: &Platform, t: &Tenant) -> Result<Arc<Feed>, Error> {
        let place = Place::of(t);
        let (wake_tx, _) = watch::channel(0u64);
        // Events outside the control database (database mode, another server): a
        // connection of the feed's own, woken by that database's notifications.
        let db = match super::gate::elsewhere(t) {
            true => {
                let config = super::gate::config_of(p, t).await?;
                let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
                tokio::spawn(forward(conn, wake_tx.clone()));
                client
                    .batch_execute(&format!("LISTEN {WAKE_CHANNEL}"))
                    .await?;
                Some(Arc::new(client))
            }
            false => None,
        };
        let feed = Feed {
            place,
            tx: broadcast::channel(BUFFER).0,
            cursor: AtomicI64::new(0),
            subscribers: AtomicUsize::new(0),
            closed: watch::channel(false).0,
            wake: feed_wake(&db, wake_tx),
            db,
            pool: p.pool.clone(),
        };
        let latest = feed.latest().await?;
        feed.cursor.store(latest, Ordering::SeqCst);
        Ok(Arc::new(feed))
    }
}

/// Forwards a connection's notifications as wake-ups until it closes.
async fn forward<S, T>(mut conn: tokio_postgres::Connection<S, T>, wake: watch::Sender<u64>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(m) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
        match m {
            Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                wake.send_modify(|n| *n = n.wrapping_add(1));
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
}

/// The control database's wake channel, reconnecting until the server stops.
async fn listen(
    config: tokio_postgres::Config,
    wake: watch::Sender<u64>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        if let Ok((client, conn)) = config.connect(tokio_postgres::NoTls).await {
            let forwarding = tokio::spawn(forward(conn, wake.clone()));
            if client
                .batch_execute(&format!("LISTEN {WAKE_CHANNEL}"))
                .await
                .is_ok()
            {
                // Anything published while not listening is read now.
                wake.send_modify(|n| *n = n.wrapping_add(1));
                tokio::select! {
                    _ = forwarding => {}
                    _ = stop.changed() => return,
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// The reader of every feed in the control database (schema and shared mode): one
/// query per wake-up for all of them, whichever tenant published (the wake-up does
/// not say, and must not: every tenant there can LISTEN to it).
async fn read_control(hub: Arc<Hub>, pool: deadpool_postgres::Pool) {
    let mut wake = hub.control_wake.subscribe();
    let mut stop = hub.stop.subscribe();
    loop {
        tokio::select! {
            _ = wake.changed() => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = drain_control(&hub, &pool).await {
            tracing::warn!(error = %e, "reading realtime events failed");
        }
    }
}

/// Hands out every control-database feed's events after its cursor.
async fn drain_control(hub: &Hub, pool: &deadpool_postgres::Pool) -> Result<(), Error> {
    loop {
        let feeds: Vec<Arc<Feed>> = {
            let feeds = hub.feeds.lock().unwrap_or_else(|e| e.into_inner());
            feeds.values().filter(|f| f.db.is_none()).cloned().collect()
        };
        if feeds.is_empty() {
            return Ok(());
        }
        let wanted: Vec<(&Place, i64)> = feeds
            .iter()
            .map(|f| (&f.place, f.cursor.load(Ordering::SeqCst)))
            .collect();
        let c = pool.get().await?;
        let batches = place::read_many(&c, &wanted).await?;
        drop(c);
        let mut more = false;
        for (feed, events) in feeds.iter().zip(batches) {
            more |= events.len() as i64 >= BATCH;
            hand_out(feed, events);
        }
        if !more {
            return Ok(());
        }
    }
}

fn hand_out(feed: &Feed, events: Vec<Event>) {
    for e in events {
        feed.cursor.store(e.id, Ordering::SeqCst);
        crate::metrics::realtime_delivered(feed.tx.receiver_count() as u64);
        // No receiver now is fine: the next subscriber reads the table.
        let _ = feed.tx.send(Arc::new(e));
    }
}

/// A feed's task: in database mode reads and hands out new events (woken by its own
/// database); for every feed, checks its tenant may still stream, until it may not,
/// it has had no subscriber for a while, or the server stops.
async fn run(hub: Arc<Hub>, feed: Arc<Feed>, pool: deadpool_postgres::Pool) {
    // A control-database feed is read by `read_control`; its wake-ups are not ours.
    let mut wake = feed.wake.as_ref().map(|own| own.subscribe());
    let mut stop = hub.stop.subscribe();
    let (mut checked, mut idle_since) = (Instant::now(), None::<Instant>);
    let period = if wake.is_some() { POLL } else { CHECK };
    loop {
        let woken = async {
            match wake.as_mut() {
                Some(w) => {
                    let _ = w.changed().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = woken => {}
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => break,
        }
        if feed.db.is_some() {
            if let Err(e) = drain(&feed).await {
                tracing::warn!(tenant = %feed.place.tenant, error = %e, "reading realtime events failed");
            }
        }
        if checked.elapsed() >= CHECK {
            checked = Instant::now();
            match check(&feed, &pool).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(tenant = %feed.place.tenant, error = %e, "checking a realtime feed failed")
                }
            }
            let mut feeds = hub.feeds.lock().unwrap_or_else(|e| e.into_inner());
            if feed.subscribers.load(Ordering::SeqCst) == 0 {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= IDLE {
                    feeds.remove(&feed.place.tenant);
                    return;
                }
            } else {
                idle_since = None;
            }
        }
    }
    hub.feeds
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&feed.place.tenant);
    feed.closed.send_replace(true);
}

/// Hands out every event after the cursor (a database-mode feed).
async fn drain(feed: &Feed) -> Result<(), Error> {
    loop {
        let events = feed.read(feed.cursor.load(Ordering::SeqCst)).await?;
        let n = events.len();
        hand_out(feed, events);
        if (n as i64) < BATCH {
            return Ok(());
        }
    }
}

/// Whether the tenant may still stream; also follows a table that went back (a
/// restore). Pruning is the quota round's (`upkeep`), for every tenant.
async fn check(feed: &Feed, pool: &deadpool_postgres::Pool) -> Result<bool, Error> {
    let c = pool.get().await?;
    let live = crate::store::realtime::live(&c, feed.place.tenant).await?;
    if live != Some(true) {
        return Ok(false);
    }
    drop(c);
    let latest = feed.latest().await?;
    if latest < feed.cursor.load(Ordering::SeqCst) {
        feed.cursor.store(latest, Ordering::SeqCst);
    }
    Ok(true)
}

/// One subscriber's stream of its tenant's events.
pub struct Subscription {
    feed: Arc<Feed>,
    rx: broadcast::Receiver<Arc<Event>>,
    closed: watch::Receiver<bool>,
    stop: watch::Receiver<bool>,
    filter: Filter,
    /// The last id handed out (or skipped by the filter).
    delivered: i64,
    /// Read the table before the broadcast (resuming, or fallen behind).
    backfill: bool,
    backlog: VecDeque<Event>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.feed.subscribers.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Subscription {
    /// The next event for this subscriber; `None` when the stream ends (the tenant
    /// was suspended or deleted, or the server stops).
    pub async fn next(&mut self) -> Option<Result<Arc<Event>, Error>> {
        loop {
            if *self.closed.borrow() || *self.stop.borrow() {
                return None;
            }
            if let Some(e) = self.backlog.pop_front() {
                self.delivered = e.id;
                if self.filter.matches(&e.channel) {
                    return Some(Ok(Arc::new(e)));
                }
                continue;
            }
            if self.backfill {
                match self.feed.read(self.delivered).await {
                    Ok(events) => {
                        self.backfill = events.len() as i64 >= BATCH;
                        self.backlog.extend(events);
                        continue;
                    }
                    Err(e) => return Some(Err(e)),
                }
            }
            tokio::select! {
                r = self.rx.recv() => match r {
                    Ok(e) if e.id > self.delivered => {
                        self.delivered = e.id;
                        if self.filter.matches(&e.channel) {
                            return Some(Ok(e));
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => self.backfill = true,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = self.closed.changed() => {}
                _ = self.stop.changed() => {}
            }
        }
    }
}
