/// How a layer blob is compressed.
public enum LayerCompression: Sendable, Hashable, CustomStringConvertible {
    /// A plain tar stream.
    case none
    /// gzip (RFC 1952), the OCI and Docker default.
    case gzip
    /// Zstandard (RFC 8878).
    case zstd

    /// The compression an OCI or Docker layer media type names, or `nil` for a media type that
    /// is not a layer tar (a config blob, a foreign layer in an unknown format).
    ///
    /// Covers `application/vnd.oci.image.layer.v1.tar[+gzip|+zstd]`, their `nondistributable`
    /// variants, and Docker's `application/vnd.docker.image.rootfs.diff.tar[.gzip]` and
    /// `…foreign.diff.tar.gzip` (Docker image manifest v2 schema 2).
    ///
    /// - Parameter mediaType: The descriptor's `mediaType`.
    public init?(mediaType: String) {
        switch mediaType {
        case "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            "application/vnd.docker.image.rootfs.diff.tar":
            self = .none
        case "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":
            self = .gzip
        case "application/vnd.oci.image.layer.v1.tar+zstd",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd":
            self = .zstd
        default:
            return nil
        }
    }

    /// Detects the compression from a blob's first bytes: the gzip magic `1f 8b`, the zstd
    /// frame magic `28 b5 2f fd`, anything else is taken as a plain tar.
    ///
    /// - Parameter prefix: At least the first four bytes of the blob (fewer bytes are read as
    ///   a plain tar).
    public init(detectingFrom prefix: some Collection<UInt8>) {
        let head = Array(prefix.prefix(4))
        if head.starts(with: [0x1f, 0x8b]) {
            self = .gzip
        } else if head == [0x28, 0xb5, 0x2f, 0xfd] {
            self = .zstd
        } else {
            self = .none
        }
    }

    /// The OCI media type of a layer tar with this compression.
    public var ociMediaType: String {
        switch self {
        case .none: "application/vnd.oci.image.layer.v1.tar"
        case .gzip: "application/vnd.oci.image.layer.v1.tar+gzip"
        case .zstd: "application/vnd.oci.image.layer.v1.tar+zstd"
        }
    }

    public var description: String {
        switch self {
        case .none: "none"
        case .gzip: "gzip"
        case .zstd: "zstd"
        }
    }
}

/// Where a layer blob's bytes come from.
public enum LayerSource: Sendable {
    /// A file on disk (a blob in the content store).
    case file(String)
    /// Chunks as they arrive, for example from a registry download: the layer is unpacked
    /// while the blob is still being fetched. The stream's end is the blob's end.
    case stream(AsyncStream<[UInt8]>)
}
