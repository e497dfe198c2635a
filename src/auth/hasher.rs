//! The only place API keys are hashed: a few dedicated threads with a
//! short queue in front.
//!
//! argon2id is slow and large on purpose. Run on tokio's blocking pool, each
//! concurrent verification got a thread of its own (up to 512) and glibc
//! gave each thread its own malloc arena, which kept the hash's memory after
//! it was done: RSS grew with every concurrent verification and never came
//! back. Here a fixed number of threads each own one reusable block buffer,
//! so memory is bounded by threads × the hash's memory whatever the load,
//! and a job that finds the queue full is refused at once instead of waiting.
//!
//! New keys are hashed with 7 MiB and 5 passes ([`keys::key_params`]), one
//! of the settings OWASP lists as equal in strength to the crate's default
//! of 19 MiB and 2 passes: about the same work per guess, under half the
//! memory each thread keeps. A stored hash is verified with the parameters
//! it names, so keys made with the older default keep working (a thread
//! that verifies one grows its buffer to 19 MiB).

use std::sync::{
    Arc, Mutex,
    mpsc::{Receiver, SyncSender, TrySendError, sync_channel},
};

use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, Version,
    password_hash::{Output, ParamsString, SaltString, rand_core::OsRng},
};
use tokio::sync::oneshot;

use super::keys::{self, NewKey};
use crate::metrics::labels::{CounterLabel, HashPurpose};

/// Largest argon2 memory a stored hash may ask for (64 MiB): the hashes are
/// ours, but a tampered row must not make a thread allocate without bound.
const MAX_BLOCKS: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("every key hashing thread is busy")]
    Busy,
    #[error("key hashing failed: {0}")]
    Failed(String),
}

enum Job {
    Verify {
        key: String,
        hash: String,
        reply: oneshot::Sender<bool>,
    },
    Generate {
        reply: oneshot::Sender<Result<NewKey, HashError>>,
    },
}

/// A handle to the hashing threads; cheap to clone.
#[derive(Clone)]
pub struct Hasher {
    jobs: SyncSender<Job>,
}

impl Hasher {
    /// Starts `threads` hashing threads (0: one per core) behind a queue of
    /// `queue` jobs. The threads end when the last handle is dropped.
    pub fn start(threads: usize, queue: usize) -> std::io::Result<Self> {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(2, usize::from),
            n => n,
        };
        let (jobs, rx) = sync_channel(queue);
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..threads {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("key-hash-{n}"))
                .spawn(move || work(&rx))?;
        }
        Ok(Self { jobs })
    }

    /// Whether `key` matches `stored_hash`; `Busy` when the queue is full.
    pub async fn verify(&self, key: &str, stored_hash: &str) -> Result<bool, HashError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Verify {
            key: key.to_owned(),
            hash: stored_hash.to_owned(),
            reply,
        })?;
        answer
            .await
            .map_err(|_| HashError::Failed("hashing thread gone".into()))
    }

    /// A new key and its hash; `Busy` when the queue is full.
    pub async fn generate(&self) -> Result<NewKey, HashError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Generate { reply })?;
        answer
            .await
            .map_err(|_| HashError::Failed("hashing thread gone".into()))?
    }

    fn submit(&self, job: Job) -> Result<(), HashError> {
        self.jobs.try_send(job).map_err(|err| match err {
            TrySendError::Full(_) => HashError::Busy,
            TrySendError::Disconnected(_) => HashError::Failed("hashing threads gone".into()),
        })
    }
}

fn work(jobs: &Mutex<Receiver<Job>>) {
    let mut memory: Vec<Block> = Vec::new();
    loop {
        // The lock is held only while taking a job, never while hashing.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        match job {
            Job::Verify { key, hash, reply } => {
                HashPurpose::Verify.count();
                let _ = reply.send(verify_with(&mut memory, &key, &hash).unwrap_or(false));
            }
            Job::Generate { reply } => {
                HashPurpose::Generate.count();
                let _ = reply.send(generate_with(&mut memory));
            }
        }
    }
}

/// The thread's block buffer, grown to `count` blocks once and reused.
fn blocks(memory: &mut Vec<Block>, count: usize) -> Result<&mut [Block], HashError> {
    if count > MAX_BLOCKS {
        return Err(HashError::Failed(format!(
            "argon2 memory of {count} KiB refused"
        )));
    }
    if memory.len() < count {
        memory.resize(count, Block::default());
    }
    Ok(&mut memory[..count])
}

fn verify_with(memory: &mut Vec<Block>, key: &str, stored: &str) -> Result<bool, HashError> {
    let failed = |e: &dyn std::fmt::Display| HashError::Failed(e.to_string());
    let parsed = PasswordHash::new(stored).map_err(|e| failed(&e))?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|e| failed(&e))?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|e| failed(&e))?
        .unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(|e| failed(&e))?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Ok(false);
    };
    let mut salt_bytes = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_bytes).map_err(|e| failed(&e))?;
    let mut out = vec![0u8; expected.len()];
    let count = params.block_count();
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(key.as_bytes(), salt, &mut out, blocks(memory, count)?)
        .map_err(|e| failed(&e))?;
    // `Output`'s equality is constant-time.
    Ok(Output::new(&out).map_err(|e| failed(&e))? == expected)
}

fn generate_with(memory: &mut Vec<Block>) -> Result<NewKey, HashError> {
    let failed = |e: &dyn std::fmt::Display| HashError::Failed(e.to_string());
    let (plaintext, lookup) = keys::new_plaintext();
    let params = keys::key_params().map_err(|e| HashError::Failed(e.to_string()))?;
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt.decode_b64(&mut salt_bytes).map_err(|e| failed(&e))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let count = params.block_count();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(
            plaintext.as_bytes(),
            salt_raw,
            &mut out,
            blocks(memory, count)?,
        )
        .map_err(|e| failed(&e))?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| failed(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| failed(&e))?),
    }
    .to_string();
    Ok(NewKey {
        plaintext,
        lookup,
        hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_made_here_verify_here_and_with_the_plain_crate() {
        let hasher = Hasher::start(1, 2).unwrap();
        let key = hasher.generate().await.unwrap();
        assert!(keys::verify(&key.plaintext, &key.hash));
        assert!(hasher.verify(&key.plaintext, &key.hash).await.unwrap());
        let other = keys::generate().unwrap();
        assert!(!hasher.verify(&other.plaintext, &key.hash).await.unwrap());
        assert!(hasher.verify(&other.plaintext, &other.hash).await.unwrap());
        assert!(
            !hasher
                .verify(&other.plaintext, "not a hash")
                .await
                .unwrap_or(false)
        );
    }

    #[tokio::test]
    async fn new_keys_use_the_small_parameters_and_old_hashes_still_verify() {
        let hasher = Hasher::start(1, 2).unwrap();
        let key = hasher.generate().await.unwrap();
        let expected = format!("m={},t={},p=1", keys::KEY_MEMORY_KIB, keys::KEY_PASSES);
        assert!(key.hash.contains(&expected), "{}", key.hash);
        assert!(keys::generate().unwrap().hash.contains(&expected));

        // A key hashed with the crate's default (19 MiB, 2 passes), as keys
        // made before the change were.
        use argon2::PasswordHasher;
        let salt = SaltString::generate(&mut OsRng);
        let old = Argon2::default()
            .hash_password(key.plaintext.as_bytes(), &salt)
            .unwrap()
            .to_string();
        assert!(old.contains("m=19456,t=2,p=1"), "{old}");
        assert!(hasher.verify(&key.plaintext, &old).await.unwrap());
        assert!(!hasher.verify("tk_wrong", &old).await.unwrap());
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let hasher = Hasher::start(1, 1).unwrap();
        let key = keys::generate().unwrap();
        // One running, one queued; the rest must be refused, not wait.
        // join_all polls each in turn at once, so all six are submitted
        // before the thread can finish the first.
        let jobs = (0..6).map(|_| hasher.verify(&key.plaintext, &key.hash));
        let busy = futures_util::future::join_all(jobs)
            .await
            .into_iter()
            .filter(|outcome| matches!(outcome, Err(HashError::Busy)))
            .count();
        assert!(busy >= 3, "only {busy} of 6 refused");
    }
}
