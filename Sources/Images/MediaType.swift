public import Layers

/// A content type from the OCI image spec or Docker's image manifest v2 schema 2.
///
/// Both families are understood everywhere: a Docker manifest list is read like an OCI index,
/// a Docker schema 2 manifest like an OCI manifest, and Docker's `rootfs.diff.tar.gzip` layer
/// like an OCI `tar+gzip` layer.
public struct MediaType: RawRepresentable, Sendable, Hashable, Codable, ExpressibleByStringLiteral,
    CustomStringConvertible
{
    /// The media type string.
    public var rawValue: String

    /// Wraps a media type string.
    public init(rawValue: String) { self.rawValue = rawValue }
    /// Wraps a media type string literal.
    public init(stringLiteral value: String) { rawValue = value }

    /// The media type string.
    public var description: String { rawValue }

    /// `application/vnd.oci.image.index.v1+json`.
    public static let ociIndex: MediaType = "application/vnd.oci.image.index.v1+json"
    /// `application/vnd.oci.image.manifest.v1+json`.
    public static let ociManifest: MediaType = "application/vnd.oci.image.manifest.v1+json"
    /// `application/vnd.oci.image.config.v1+json`.
    public static let ociConfig: MediaType = "application/vnd.oci.image.config.v1+json"
    /// `application/vnd.oci.image.layer.v1.tar`.
    public static let ociLayer: MediaType = "application/vnd.oci.image.layer.v1.tar"
    /// `application/vnd.oci.image.layer.v1.tar+gzip`.
    public static let ociLayerGzip: MediaType = "application/vnd.oci.image.layer.v1.tar+gzip"
    /// `application/vnd.oci.image.layer.v1.tar+zstd`.
    public static let ociLayerZstd: MediaType = "application/vnd.oci.image.layer.v1.tar+zstd"
    /// `application/vnd.docker.distribution.manifest.list.v2+json`.
    public static let dockerManifestList: MediaType = "application/vnd.docker.distribution.manifest.list.v2+json"
    /// `application/vnd.docker.distribution.manifest.v2+json`.
    public static let dockerManifest: MediaType = "application/vnd.docker.distribution.manifest.v2+json"
    /// `application/vnd.docker.container.image.v1+json`.
    public static let dockerConfig: MediaType = "application/vnd.docker.container.image.v1+json"
    /// `application/vnd.docker.image.rootfs.diff.tar` (uncompressed Docker layer).
    public static let dockerLayer: MediaType = "application/vnd.docker.image.rootfs.diff.tar"
    /// `application/vnd.docker.image.rootfs.diff.tar.gzip`.
    public static let dockerLayerGzip: MediaType = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    /// `application/vnd.docker.image.rootfs.diff.tar.zstd`.
    public static let dockerLayerZstd: MediaType = "application/vnd.docker.image.rootfs.diff.tar.zstd"
    /// `application/vnd.docker.image.rootfs.foreign.diff.tar.gzip` (a layer fetched from its `urls`).
    public static let dockerForeignLayerGzip: MediaType = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

    /// Whether this is an index or a manifest list.
    public var isIndex: Bool { self == .ociIndex || self == .dockerManifestList }
    /// Whether this is a single-platform image manifest.
    public var isManifest: Bool { self == .ociManifest || self == .dockerManifest }

    /// How a layer of this type is compressed, or nil if this is not a layer type Berth knows.
    public var layerCompression: LayerCompression? { LayerCompression(mediaType: rawValue) }

    /// The `Accept` header value for manifest requests: every manifest and index type Berth reads.
    static let manifestAccept = [ociIndex, ociManifest, dockerManifestList, dockerManifest]
        .map(\.rawValue).joined(separator: ", ")
}
