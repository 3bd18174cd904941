//! gRPC over unix sockets: a server bound to a socket path (an old socket file there is
//! replaced, as the kubelet's own plugins do) and a client channel to one.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::K8sError;

/// Binds `path` (removing a socket file left there), creating its directory.
pub fn bind(path: &Path) -> Result<UnixListenerStream, K8sError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| K8sError::Io {
            what: "create the socket directory",
            path: dir.to_owned(),
            source,
        })?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(K8sError::Io {
                what: "remove the old socket",
                path: path.to_owned(),
                source,
            });
        }
    }
    let l = UnixListener::bind(path).map_err(|source| K8sError::Io {
        what: "bind",
        path: path.to_owned(),
        source,
    })?;
    Ok(UnixListenerStream::new(l))
}

/// A channel to the gRPC server on the unix socket `path` (connected now, so that a
/// missing or dead socket is an error here).
pub async fn connect(path: &Path) -> Result<Channel, K8sError> {
    let p: PathBuf = path.to_owned();
    // The URI is required by the API and unused: the connector dials the socket.
    let ep = Endpoint::from_static("http://localhost");
    ep.connect_with_connector(tower::service_fn(move |_: Uri| {
        let p = p.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(p).await?)) }
    }))
    .await
    .map_err(|source| K8sError::Connect {
        path: path.to_owned(),
        source,
    })
}

/// The identity (device, inode) of the file at `path`, `None` when there is none: a
/// socket made again (a kubelet restart) has another.
pub fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}
