//! What the simulator's Cloud API surface (simulator/cloud.rs) keeps: the registered numbers, the
//! media ids it gave, and the messages it accepted.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use serde::Deserialize;
use serde_json::Value;

/// One registered Cloud API number.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Number {
    pub(crate) access_token: String,
    pub(crate) app_secret: String,
    pub(crate) callback_url: Option<String>,
    #[serde(default)]
    pub(crate) errors: HashMap<String, VecDeque<i64>>,
}

#[derive(Default)]
pub(crate) struct CloudNumbers {
    pub(crate) numbers: Mutex<HashMap<String, Number>>,
    pub(crate) media: Mutex<HashSet<String>>,
    pub(crate) sent: Mutex<Vec<Value>>,
    pub(crate) uploads: AtomicU64,
}
