//! The retail shop the demo simulates: customers, products, orders, reviews, clickstream
//! and loyalty points, as a stream of JSON events.
//!
//! Everything follows from the seed and the start time, so two runs with the same
//! `--seed` and `--start` produce the same events in the same order. Each event carries
//! its own event time, advanced by a simulated clock (one tick per event at the target
//! rate), so the data looks the same at 200 or 20,000 events/s. Orders move through
//! OPEN -> COOKING/PACKING -> DELIVERING -> CLOSED (or CANCELLED); every change sends the
//! whole order again with its `statuses` history and `updated_at`, as order services
//! publish them. A small share of events is late (sent after newer ones), duplicated
//! (sent twice) or malformed (broken JSON, wrong types), so the dedup and dead-letter
//! paths have something to do.

use std::collections::VecDeque;

use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// The bronze sources the shop writes, as `(source, key field)`; topics are `shop.<source>`.
pub const SOURCES: &[(&str, &str)] = &[
    ("customers", "customer_id"),
    ("products", "product_id"),
    ("orders", "order_id"),
    ("reviews", "review_id"),
    ("clicks", "session_id"),
    ("loyalty", "customer_id"),
];

/// One event for one source.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub source: &'static str,
    /// The Kafka key (the entity id), so one entity's events share a partition.
    pub key: String,
    /// The message: a JSON object, or for malformed events whatever was sent.
    pub payload: String,
    pub kind: Kind,
}

/// What an event is, for the generator's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Normal,
    Late,
    Duplicate,
    /// Not valid JSON, or not an object: dead letters at any door.
    Broken,
    /// Valid JSON whose field has the wrong type: dead letters in bronze.
    WrongType,
}

/// Shares of the unusual events.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    pub late: f64,
    pub duplicate: f64,
    pub malformed: f64,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            late: 0.02,
            duplicate: 0.01,
            malformed: 0.005,
        }
    }
}

const CATEGORIES: &[(&str, &str)] = &[
    ("Bakery", "Food"),
    ("Dairy", "Food"),
    ("Produce", "Food"),
    ("Frozen", "Food"),
    ("Drinks", "Beverages"),
    ("Coffee & Tea", "Beverages"),
    ("Cleaning", "Household"),
    ("Kitchen", "Household"),
    ("Toys", "Kids"),
    ("Books", "Media"),
];
const TIERS: &[&str] = &["Bronze", "Silver", "Gold"];
const CITIES: &[&str] = &[
    "Amsterdam",
    "Berlin",
    "Lisbon",
    "Madrid",
    "Milan",
    "Paris",
    "Prague",
    "Vienna",
    "Warsaw",
    "Zurich",
];
const FIRST: &[&str] = &[
    "Ana", "Ben", "Chloe", "David", "Eva", "Felix", "Greta", "Hugo", "Ines", "Jonas", "Klara",
    "Luca", "Mia", "Noah", "Olga", "Pablo",
];
const LAST: &[&str] = &[
    "Almeida", "Berg", "Costa", "Dvorak", "Engel", "Fischer", "Garcia", "Horvat", "Ivanova",
    "Jansen", "Kowalski", "Laurent", "Moretti", "Novak",
];
const PAYMENT: &[&str] = &["card", "card", "card", "paypal", "cash", "voucher"];
const PAGES: &[&str] = &["home", "search", "category", "product", "cart", "checkout"];
const REVIEW_TEXT: &[&str] = &[
    "terrible, would not buy again",
    "not great",
    "ok for the price",
    "good, arrived quickly",
    "excellent, buying again",
];

struct Product {
    id: u64,
    category: usize,
    price_cents: u64,
}

struct Customer {
    id: u64,
    tier: usize,
    points: u64,
}

struct Order {
    id: u64,
    customer: u64,
    session: String,
    created: DateTime<Utc>,
    items: Vec<(u64, usize, u64, u64)>,
    statuses: Vec<(&'static str, DateTime<Utc>)>,
    bonus_payment: u64,
    payment_method: &'static str,
    /// Index into the status path; the order is done at its end.
    step: usize,
    cancelled: bool,
}

/// Loyalty points a closed order earns: 5% of its cost, a point per cent.
fn grant(cost_cents: u64) -> u64 {
    cost_cents / 20
}

/// The simulated shop.
pub struct Shop {
    rng: StdRng,
    mix: Mix,
    now: DateTime<Utc>,
    tick: Duration,
    customers: Vec<Customer>,
    products: Vec<Product>,
    open: Vec<Order>,
    next_order: u64,
    next_review: u64,
    next_session: u64,
    next_click: u64,
    /// Events held back to be sent late, with the number of events to wait.
    held: VecDeque<(u32, Event)>,
    /// Events ready to go out before anything new is made.
    ready: VecDeque<Event>,
    last: Option<Event>,
}

impl Shop {
    /// A shop with `customers` customers and `products` products, whose clock starts at
    /// `start` and advances `tick` per event.
    pub fn new(seed: u64, start: DateTime<Utc>, tick: Duration, mix: Mix) -> Shop {
        let mut shop = Shop {
            rng: StdRng::seed_from_u64(seed),
            mix,
            now: start,
            tick,
            customers: Vec::new(),
            products: Vec::new(),
            open: Vec::new(),
            next_order: 1,
            next_review: 1,
            next_session: 1,
            next_click: 1,
            held: VecDeque::new(),
            ready: VecDeque::new(),
            last: None,
        };
        for _ in 0..200 {
            let e = shop.new_product();
            shop.ready.push_back(e);
        }
        for _ in 0..500 {
            let e = shop.new_customer();
            shop.ready.push_back(e);
        }
        shop
    }

    /// Starts order, review, session and click ids at `first`, to continue an earlier
    /// run. Customers and products keep their ids (the same entities); past the first run
    /// their opening snapshots are not sent again, so stored history is not reset.
    pub fn continue_ids(&mut self, first: u64) {
        if first > 1 {
            self.ready.clear();
        }
        self.next_order = first;
        self.next_review = first;
        self.next_session = first;
        self.next_click = first;
    }

    /// The next event.
    pub fn next_event(&mut self) -> Event {
        self.now += self.tick;
        for h in self.held.iter_mut() {
            h.0 = h.0.saturating_sub(1);
        }
        if self.held.front().is_some_and(|h| h.0 == 0)
            && let Some((_, mut e)) = self.held.pop_front()
        {
            e.kind = Kind::Late;
            return self.remember(e);
        }
        if let Some(e) = self.ready.pop_front() {
            return self.remember(e);
        }
        let roll: f64 = self.rng.random();
        if roll < self.mix.malformed {
            return self.malformed();
        }
        if roll < self.mix.malformed + self.mix.duplicate
            && let Some(mut e) = self.last.clone()
            && e.kind == Kind::Normal
        {
            e.kind = Kind::Duplicate;
            return e;
        }
        let e = self.business_event();
        if self.rng.random::<f64>() < self.mix.late && e.source == "orders" {
            // Held back: a newer update of the same order may overtake it.
            let wait = self.rng.random_range(20..200);
            self.held.push_back((wait, e));
            return self.next_event();
        }
        self.remember(e)
    }

    fn remember(&mut self, e: Event) -> Event {
        self.last = Some(e.clone());
        e
    }

    fn business_event(&mut self) -> Event {
        let roll: f64 = self.rng.random();
        match roll {
            r if r < 0.22 => self.new_order(),
            r if r < 0.50 => self.advance_order(),
            r if r < 0.88 => self.click(),
            r if r < 0.93 => self.review(),
            r if r < 0.96 => self.tier_change(),
            r if r < 0.985 => self.new_customer(),
            _ => self.price_change(),
        }
    }

    fn ts(t: DateTime<Utc>) -> String {
        t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    fn event(source: &'static str, key: u64, v: Value) -> Event {
        Event {
            source,
            key: key.to_string(),
            payload: v.to_string(),
            kind: Kind::Normal,
        }
    }

    fn new_product(&mut self) -> Event {
        let id = self.products.len() as u64 + 1;
        let category = self.rng.random_range(0..CATEGORIES.len());
        let price_cents = self.rng.random_range(99..5_000);
        self.products.push(Product {
            id,
            category,
            price_cents,
        });
        self.product_event(id as usize - 1)
    }

    fn product_event(&self, i: usize) -> Event {
        let p = &self.products[i];
        let (category, parent) = CATEGORIES[p.category];
        Self::event(
            "products",
            p.id,
            json!({
                "product_id": p.id,
                "name": format!("{category} item {}", p.id),
                "category": category,
                "parent_category": parent,
                "price": p.price_cents as f64 / 100.0,
                "updated_at": Self::ts(self.now),
            }),
        )
    }

    fn price_change(&mut self) -> Event {
        let i = self.rng.random_range(0..self.products.len());
        let pct = self.rng.random_range(90..115);
        let p = &mut self.products[i];
        p.price_cents = (p.price_cents * pct / 100).max(99);
        self.product_event(i)
    }

    fn new_customer(&mut self) -> Event {
        let id = self.customers.len() as u64 + 1;
        self.customers.push(Customer {
            id,
            tier: 0,
            points: 0,
        });
        self.customer_event(id as usize - 1)
    }

    fn customer_event(&mut self, i: usize) -> Event {
        let c = &self.customers[i];
        let (id, tier) = (c.id, c.tier);
        let first = FIRST[(id as usize * 7) % FIRST.len()];
        let last = LAST[(id as usize * 11) % LAST.len()];
        Self::event(
            "customers",
            id,
            json!({
                "customer_id": id,
                "name": format!("{first} {last}"),
                "email": format!("{}.{}{id}@example.com", first.to_lowercase(), last.to_lowercase()),
                "city": CITIES[(id as usize * 3) % CITIES.len()],
                "loyalty_status": TIERS[tier],
                "updated_at": Self::ts(self.now),
            }),
        )
    }

    fn tier_change(&mut self) -> Event {
        let i = self.rng.random_range(0..self.customers.len());
        let c = &mut self.customers[i];
        c.tier = match c.points {
            p if p >= 6_000 => 2,
            p if p >= 2_000 => 1,
            _ => (c.tier + 1) % TIERS.len(),
        };
        self.customer_event(i)
    }

    fn new_order(&mut self) -> Event {
        let customer = self.rng.random_range(1..=self.customers.len() as u64);
        let n = self.rng.random_range(1..=4);
        let mut items = Vec::new();
        for _ in 0..n {
            let p = &self.products[self.rng.random_range(0..self.products.len())];
            let qty = self.rng.random_range(1..=3);
            items.push((p.id, p.category, p.price_cents, qty));
        }
        // Points are worth a cent each; some customers spend them (up to half the order).
        let points = self.customers[customer as usize - 1].points;
        let cost: u64 = items.iter().map(|i| i.2 * i.3).sum();
        let bonus_payment = if points > 100 && self.rng.random::<f64>() < 0.3 {
            self.rng.random_range(10..=points.min(cost / 2).max(10))
        } else {
            0
        };
        let session = format!("s{}", self.next_session);
        self.next_session += 1;
        let order = Order {
            id: self.next_order,
            customer,
            session,
            created: self.now,
            items,
            statuses: vec![("OPEN", self.now)],
            bonus_payment,
            payment_method: PAYMENT[self.rng.random_range(0..PAYMENT.len())],
            step: 0,
            cancelled: false,
        };
        self.next_order += 1;
        // The clickstream that led to it: product views, the cart, the checkout.
        for (k, page) in ["product", "cart", "checkout"].iter().enumerate() {
            let click = self.click_event(
                &order.session,
                Some(customer),
                page,
                order.items.first().map(|i| i.0),
                self.now - Duration::seconds(60 - 20 * k as i64),
            );
            self.ready.push_back(click);
        }
        let e = self.order_event(&order);
        self.open.push(order);
        e
    }

    fn advance_order(&mut self) -> Event {
        if self.open.is_empty() {
            return self.new_order();
        }
        let i = self.rng.random_range(0..self.open.len());
        let now = self.now;
        let cancel = self.rng.random::<f64>() < 0.06;
        let kitchen = self.rng.random::<bool>();
        let o = &mut self.open[i];
        let path: [&'static str; 3] = [
            if kitchen { "COOKING" } else { "PACKING" },
            "DELIVERING",
            "CLOSED",
        ];
        if cancel && o.step < 2 {
            o.statuses.push(("CANCELLED", now));
            o.cancelled = true;
        } else {
            o.statuses.push((path[o.step], now));
            o.step += 1;
        }
        let done = o.cancelled || o.step == path.len();
        let e = self.order_event(&self.open[i]);
        if done {
            let o = self.open.swap_remove(i);
            if !o.cancelled {
                let cost: u64 = o.items.iter().map(|i| i.2 * i.3).sum();
                let points = grant(cost);
                let c = &mut self.customers[o.customer as usize - 1];
                c.points = c.points + points - o.bonus_payment.min(c.points);
                let grant = Self::event(
                    "loyalty",
                    o.customer,
                    json!({
                        "customer_id": o.customer,
                        "order_id": o.id,
                        "points": points,
                        "reason": "order",
                        "granted_at": Self::ts(now),
                    }),
                );
                self.ready.push_back(grant);
            }
        }
        e
    }

    fn order_event(&self, o: &Order) -> Event {
        let cost: u64 = o.items.iter().map(|i| i.2 * i.3).sum();
        let items: Vec<Value> = o
            .items
            .iter()
            .map(|(product, category, price, qty)| {
                json!({
                    "product_id": product,
                    "category": CATEGORIES[*category].0,
                    "price": *price as f64 / 100.0,
                    "quantity": qty,
                })
            })
            .collect();
        let statuses: Vec<Value> = o
            .statuses
            .iter()
            .map(|(s, at)| json!({"status": s, "at": Self::ts(*at)}))
            .collect();
        let status = o.statuses.last().map(|s| s.0).unwrap_or("OPEN");
        let bonus_grant = if status == "CLOSED" { grant(cost) } else { 0 };
        Self::event(
            "orders",
            o.id,
            json!({
                "order_id": o.id,
                "customer_id": o.customer,
                "store_id": 1 + o.customer % 12,
                "session_id": o.session,
                "created_at": Self::ts(o.created),
                "updated_at": Self::ts(self.now),
                "status": status,
                "order_items": items,
                "statuses": statuses,
                "cost": cost as f64 / 100.0,
                "bonus_payment": o.bonus_payment as f64 / 100.0,
                "bonus_grant": bonus_grant,
                "payment": {
                    "method": o.payment_method,
                    "amount": (cost.saturating_sub(o.bonus_payment)) as f64 / 100.0,
                },
            }),
        )
    }

    fn click_event(
        &mut self,
        session: &str,
        customer: Option<u64>,
        page: &str,
        product: Option<u64>,
        at: DateTime<Utc>,
    ) -> Event {
        let id = self.next_click;
        self.next_click += 1;
        let kind = match page {
            "cart" => "add_to_cart",
            "checkout" => "checkout",
            _ => "page_view",
        };
        Event {
            source: "clicks",
            key: session.to_string(),
            payload: json!({
                "event_id": id,
                "session_id": session,
                "customer_id": customer,
                "event_type": kind,
                "page": page,
                "product_id": product,
                "at": Self::ts(at),
            })
            .to_string(),
            kind: Kind::Normal,
        }
    }

    /// Browsing that does not end in an order (most of it).
    fn click(&mut self) -> Event {
        let session = format!("s{}", self.next_session);
        self.next_session += 1;
        let customer = (self.rng.random::<f64>() < 0.6)
            .then(|| self.rng.random_range(1..=self.customers.len() as u64));
        let views = self.rng.random_range(1..=4);
        let now = self.now;
        for k in 1..views {
            let product = self.rng.random_range(1..=self.products.len() as u64);
            let page = PAGES[self.rng.random_range(0..3)];
            let e = self.click_event(
                &session,
                customer,
                page,
                Some(product),
                now + Duration::seconds(k),
            );
            self.ready.push_back(e);
        }
        if self.rng.random::<f64>() < 0.25 {
            let product = self.rng.random_range(1..=self.products.len() as u64);
            let e = self.click_event(
                &session,
                customer,
                "cart",
                Some(product),
                now + Duration::seconds(5),
            );
            self.ready.push_back(e);
        }
        self.click_event(&session, customer, "home", None, now)
    }

    fn review(&mut self) -> Event {
        let id = self.next_review;
        self.next_review += 1;
        let product = self.rng.random_range(1..=self.products.len() as u64);
        let customer = self.rng.random_range(1..=self.customers.len() as u64);
        // Ratings lean positive, and some products are simply better.
        let bias = (product % 3) as i64 - 1;
        let rating = (self.rng.random_range(2..=5) + bias).clamp(1, 5);
        Self::event(
            "reviews",
            id,
            json!({
                "review_id": id,
                "product_id": product,
                "customer_id": customer,
                "rating": rating,
                "review": REVIEW_TEXT[rating as usize - 1],
                "created_at": Self::ts(self.now),
            }),
        )
    }

    fn malformed(&mut self) -> Event {
        let (source, _) = SOURCES[self.rng.random_range(0..SOURCES.len())];
        let which = self.rng.random_range(0..3);
        let (payload, kind) = match which {
            0 => (format!(r#"{{"{source}": "truncated"#), Kind::Broken),
            1 => ("[1, 2, 3]".to_string(), Kind::Broken),
            _ => {
                let key = SOURCES
                    .iter()
                    .find(|s| s.0 == source)
                    .map(|s| s.1)
                    .unwrap_or("id");
                (json!({ key: "not-a-number" }).to_string(), Kind::WrongType)
            }
        };
        Event {
            source,
            key: "malformed".to_string(),
            payload,
            kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop(seed: u64) -> Shop {
        let start = DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        Shop::new(seed, start, Duration::milliseconds(1), Mix::default())
    }

    #[test]
    fn same_seed_same_events() {
        let (mut a, mut b, mut c) = (shop(7), shop(7), shop(8));
        let ea: Vec<Event> = (0..3000).map(|_| a.next_event()).collect();
        let eb: Vec<Event> = (0..3000).map(|_| b.next_event()).collect();
        let ec: Vec<Event> = (0..3000).map(|_| c.next_event()).collect();
        assert_eq!(ea, eb);
        assert_ne!(ea, ec);
    }

    #[test]
    fn every_source_appears_with_some_unusual_events() {
        let mut s = shop(1);
        let events: Vec<Event> = (0..20_000).map(|_| s.next_event()).collect();
        for (source, key) in SOURCES {
            let normal: Vec<&Event> = events
                .iter()
                .filter(|e| e.source == *source && e.kind == Kind::Normal)
                .collect();
            assert!(normal.len() > 50, "{source}: {}", normal.len());
            for e in normal.iter().take(20) {
                let v: Value = serde_json::from_str(&e.payload).unwrap();
                assert!(v.get(key).is_some(), "{source}: {}", e.payload);
            }
        }
        for kind in [Kind::Late, Kind::Duplicate, Kind::Broken, Kind::WrongType] {
            let n = events.iter().filter(|e| e.kind == kind).count();
            assert!(n > 5 && n < 1000, "{kind:?}: {n}");
        }
    }

    #[test]
    fn orders_progress_and_close_with_a_loyalty_grant() {
        let mut s = shop(3);
        let events: Vec<Event> = (0..20_000).map(|_| s.next_event()).collect();
        let orders: Vec<Value> = events
            .iter()
            .filter(|e| e.source == "orders" && e.kind == Kind::Normal)
            .map(|e| serde_json::from_str(&e.payload).unwrap())
            .collect();
        let closed = orders.iter().find(|o| o["status"] == "CLOSED").unwrap();
        let path: Vec<&str> = closed["statuses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["status"].as_str().unwrap())
            .collect();
        assert_eq!(path.len(), 4, "{path:?}");
        assert_eq!(path[0], "OPEN");
        assert_eq!(path[3], "CLOSED");
        let cost: f64 = closed["order_items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["price"].as_f64().unwrap() * i["quantity"].as_f64().unwrap())
            .sum();
        assert!((cost - closed["cost"].as_f64().unwrap()).abs() < 0.005);
        let id = closed["order_id"].as_u64().unwrap();
        assert!(events.iter().any(|e| e.source == "loyalty"
            && serde_json::from_str::<Value>(&e.payload).unwrap()["order_id"] == id));
        assert!(orders.iter().any(|o| o["status"] == "CANCELLED"));
    }
}
