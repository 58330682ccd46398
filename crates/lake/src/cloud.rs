//! Object storage: `s3://`, `az://` / `abfss://`, `gs://` lakes and files.
//!
//! Stores are built with object_store's builders from the usual environment variables
//! (`AWS_*`, `AZURE_*`, `GOOGLE_*`) overlaid with the lake's `storage_options` (for example
//! `aws_endpoint`, `aws_allow_http`, `azure_storage_account_name`). The same stores serve
//! delta-rs (registered as its factory for these schemes, with the default log store, whose
//! commits are conditional puts) and DataFusion (`read_parquet('s3://...')`, external
//! tables), through a registry that builds a store the first time a bucket is named.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Once};

use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore,
    logstore_factories, object_store_factories,
};
use deltalake::{DeltaResult, DeltaTableError};
use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::path::Path;
use object_store::{ObjectStoreScheme, parse_url_opts};
use url::Url;

/// URL schemes of object stores tidepool can use.
pub const SCHEMES: &[&str] = &["s3", "s3a", "az", "adl", "azure", "abfs", "abfss", "gs"];

/// Builds the store for the bucket/container of `url`.
pub fn build_store(
    url: &Url,
    options: &HashMap<String, String>,
) -> Result<Arc<dyn ObjectStore>, object_store::Error> {
    let (scheme, _) = ObjectStoreScheme::parse(url)?;
    let store: Arc<dyn ObjectStore> = match scheme {
        ObjectStoreScheme::AmazonS3 => {
            let mut b = AmazonS3Builder::from_env().with_url(url.as_str());
            for (k, v) in options {
                if let Ok(key) = AmazonS3ConfigKey::from_str(&k.to_ascii_lowercase()) {
                    b = b.with_config(key, v.clone());
                }
            }
            Arc::new(b.build()?)
        }
        ObjectStoreScheme::MicrosoftAzure => {
            let mut b = MicrosoftAzureBuilder::from_env().with_url(url.as_str());
            for (k, v) in options {
                if let Ok(key) = AzureConfigKey::from_str(&k.to_ascii_lowercase()) {
                    b = b.with_config(key, v.clone());
                }
            }
            Arc::new(b.build()?)
        }
        ObjectStoreScheme::GoogleCloudStorage => {
            let mut b = GoogleCloudStorageBuilder::from_env().with_url(url.as_str());
            for (k, v) in options {
                if let Ok(key) = GoogleConfigKey::from_str(&k.to_ascii_lowercase()) {
                    b = b.with_config(key, v.clone());
                }
            }
            Arc::new(b.build()?)
        }
        _ => Arc::from(parse_url_opts(url, options)?.0),
    };
    Ok(store)
}

/// delta-rs factory for object store schemes.
#[derive(Debug, Default, Clone)]
struct CloudFactory;

impl ObjectStoreFactory for CloudFactory {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, Path)> {
        let store = build_store(url, &config.raw)?;
        let (_, path) =
            ObjectStoreScheme::parse(url).map_err(|e| DeltaTableError::GenericError {
                source: Box::new(e),
            })?;
        Ok((store, path))
    }
}

impl LogStoreFactory for CloudFactory {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

/// Registers the object store schemes with delta-rs (once per process), and the local
/// store of [`crate::local_logs`] for `file://` tables.
pub fn register_delta_handlers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let factory = Arc::new(CloudFactory);
        for scheme in SCHEMES {
            if let Ok(url) = Url::parse(&format!("{scheme}://")) {
                object_store_factories().insert(url.clone(), factory.clone());
                logstore_factories().insert(url, factory.clone());
            }
        }
        if let Ok(url) = Url::parse("file://") {
            object_store_factories().insert(url, Arc::new(crate::local_logs::LocalFactory));
        }
    });
}

/// The buckets and containers the configuration names (the lake's own, and those of
/// users' `files` prefixes): the only object stores tidepool will contact, so a URL in a
/// query never makes the server call another bucket or a credentials endpoint.
#[derive(Debug, Clone, Default)]
pub struct NamedStores(Arc<parking_lot::RwLock<Vec<String>>>);

/// `scheme://authority` of a cloud URL, `None` for local files and other schemes.
fn store_key(url: &Url) -> Option<String> {
    SCHEMES
        .contains(&url.scheme())
        .then(|| format!("{}://{}", url.scheme(), url.authority()))
}

impl NamedStores {
    /// Names the store of `location` (a URL or path; paths name nothing).
    pub fn name(&self, location: &str) {
        if let Ok(url) = Url::parse(location)
            && let Some(key) = store_key(&url)
        {
            let mut named = self.0.write();
            if !named.contains(&key) {
                named.push(key);
            }
        }
    }

    /// Refuses a cloud URL whose bucket the configuration does not name.
    pub fn check(&self, url: &Url) -> Result<(), crate::LakeError> {
        match store_key(url) {
            Some(key) if !self.0.read().contains(&key) => Err(crate::LakeError::UnnamedStore(key)),
            _ => Ok(()),
        }
    }
}

/// DataFusion's object store registry, building cloud stores on first use, for the
/// buckets the configuration names only.
#[derive(Debug)]
pub struct LazyStores {
    inner: DefaultObjectStoreRegistry,
    options: HashMap<String, String>,
    named: NamedStores,
}

impl LazyStores {
    pub fn new(options: HashMap<String, String>, named: NamedStores) -> Self {
        LazyStores {
            inner: DefaultObjectStoreRegistry::new(),
            options,
            named,
        }
    }
}

impl ObjectStoreRegistry for LazyStores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.inner.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        self.inner.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        if let Ok(store) = self.inner.get_store(url) {
            return Ok(store);
        }
        if !SCHEMES.contains(&url.scheme()) {
            return self.inner.get_store(url);
        }
        self.named
            .check(url)
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        let store = build_store(url, &self.options)?;
        let bucket = Url::parse(&format!("{}://{}", url.scheme(), url.authority()))
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        self.inner.register_store(&bucket, store.clone());
        Ok(store)
    }
}
