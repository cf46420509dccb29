//! Password hashing, bounded. Argon2 takes 19 MiB and a core's worth of
//! time per hash; run unbounded on the blocking pool, concurrent
//! registrations and logins grew the server by gigabytes that the
//! allocator's per-thread arenas never gave back. So hashes run on one
//! worker thread per core, each reusing its own memory for every hash:
//! requests queue for their turn, and the memory is that of the workers,
//! whatever the load.

use super::MatrixError;
use argon2::password_hash::{rand_core::OsRng, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

enum Job {
    Hash(String, oneshot::Sender<Result<String, String>>),
    Verify(String, String, oneshot::Sender<bool>),
}

/// The hashing workers; cheap to share.
pub struct Passwords {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl Passwords {
    /// Starts one worker per core (they stop when this is dropped).
    pub fn start() -> Passwords {
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 8);
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..workers {
            let receiver = receiver.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("axon-argon2-{i}"))
                .spawn(move || worker(receiver));
            if let Err(e) = spawned {
                tracing::error!("cannot start a password hashing thread: {e}");
            }
        }
        Passwords {
            jobs: Mutex::new(sender),
        }
    }

    fn send(&self, job: Job) -> Result<(), MatrixError> {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(job)
            .map_err(|_| MatrixError::internal("the password hashing threads stopped"))
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) of `password`.
    pub async fn hash(&self, password: String) -> Result<String, MatrixError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Hash(password, tx))?;
        rx.await
            .map_err(|_| MatrixError::internal("the password hashing threads stopped"))?
            .map_err(|e| MatrixError::internal(format!("cannot hash the password: {e}")))
    }

    /// Whether `password` matches the PHC string `hash`.
    pub async fn verify(&self, password: String, hash: String) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.send(Job::Verify(password, hash, tx)).is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }
}

fn worker(receiver: Arc<Mutex<mpsc::Receiver<Job>>>) {
    // Grown to the largest cost seen (the default's 19 MiB), then reused.
    let mut memory: Vec<Block> = Vec::new();
    loop {
        let job = match receiver.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        match job {
            Job::Hash(password, reply) => {
                let _ = reply.send(hash(&password, &mut memory).map_err(|e| e.to_string()));
            }
            Job::Verify(password, stored, reply) => {
                let _ = reply.send(verify(&password, &stored, &mut memory).unwrap_or(false));
            }
        }
    }
}

fn memory_for(params: &Params, memory: &mut Vec<Block>) {
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), Block::default());
    }
}

/// Argon2id with the default cost, as `Argon2::default().hash_password`
/// computes it, in `memory`.
fn hash(password: &str, memory: &mut Vec<Block>) -> argon2::password_hash::Result<String> {
    let params = Params::default();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.as_salt().decode_b64(&mut salt_bytes)?;
    memory_for(&params, memory);
    let blocks = &mut memory[..params.block_count()];
    let output = Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
        argon2
            .hash_password_into_with_memory(password.as_bytes(), salt_bytes, out, &mut *blocks)
            .map_err(Into::into)
    })?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Checks `password` against a stored PHC string, in `memory`.
fn verify(
    password: &str,
    stored: &str,
    memory: &mut Vec<Block>,
) -> argon2::password_hash::Result<bool> {
    let phc = PasswordHash::new(stored)?;
    let algorithm = Algorithm::try_from(phc.algorithm)?;
    let version = phc
        .version
        .map(Version::try_from)
        .transpose()?
        .unwrap_or_default();
    let params = Params::try_from(&phc)?;
    let (Some(salt), Some(expected)) = (phc.salt, phc.hash) else {
        return Ok(false);
    };
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
    memory_for(&params, memory);
    let blocks = &mut memory[..params.block_count()];
    let argon2 = Argon2::new(algorithm, version, params);
    let computed = Output::init_with(expected.len(), |out| {
        argon2
            .hash_password_into_with_memory(password.as_bytes(), salt_bytes, out, &mut *blocks)
            .map_err(Into::into)
    })?;
    // `Output`'s comparison takes constant time.
    Ok(computed == expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_here_and_with_the_argon2_crate() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let mut memory = Vec::new();
        let ours = hash("correct horse", &mut memory).unwrap();
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        assert!(verify("correct horse", &ours, &mut memory).unwrap());
        assert!(!verify("wrong", &ours, &mut memory).unwrap());
        // Hashes stored by earlier versions (the argon2 crate's own) still verify.
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default()
            .hash_password(b"battery staple", &salt)
            .unwrap()
            .to_string();
        assert!(verify("battery staple", &theirs, &mut memory).unwrap());
        assert!(Argon2::default()
            .verify_password(b"correct horse", &PasswordHash::new(&ours).unwrap())
            .is_ok());
    }
}
