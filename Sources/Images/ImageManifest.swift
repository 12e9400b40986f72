/// A single-platform image manifest: one config and an ordered list of layers.
///
/// Reads and writes both OCI manifests and Docker schema 2 manifests; ``mediaType`` says which.
public struct ImageManifest: Sendable, Hashable, Codable {
    /// Always 2.
    public var schemaVersion: Int
    /// ``MediaType/ociManifest`` or ``MediaType/dockerManifest`` (optional in OCI documents).
    public var mediaType: MediaType?
    /// The artifact type, for artifact manifests.
    public var artifactType: String?
    /// The image configuration blob.
    public var config: Descriptor
    /// The layer blobs, base layer first.
    public var layers: [Descriptor]
    /// The manifest this one refers to (OCI referrers), if any.
    public var subject: Descriptor?
    /// Free-form metadata.
    public var annotations: [String: String]?

    /// Creates an OCI manifest.
    ///
    /// - Parameters:
    ///   - config: The configuration blob.
    ///   - layers: The layer blobs, base layer first.
    ///   - annotations: Metadata, if any.
    public init(config: Descriptor, layers: [Descriptor], annotations: [String: String]? = nil) {
        schemaVersion = 2
        mediaType = .ociManifest
        self.config = config
        self.layers = layers
        self.annotations = annotations
    }
}

/// A list of manifests for different platforms: an OCI image index or a Docker manifest list.
public struct ImageIndex: Sendable, Hashable, Codable {
    /// Always 2.
    public var schemaVersion: Int
    /// ``MediaType/ociIndex`` or ``MediaType/dockerManifestList`` (optional in OCI documents).
    public var mediaType: MediaType?
    /// The manifests, each usually with a ``Descriptor/platform``.
    public var manifests: [Descriptor]
    /// Free-form metadata.
    public var annotations: [String: String]?

    /// Creates an OCI index.
    ///
    /// - Parameters:
    ///   - manifests: The manifests.
    ///   - annotations: Metadata, if any.
    public init(manifests: [Descriptor], annotations: [String: String]? = nil) {
        schemaVersion = 2
        mediaType = .ociIndex
        self.manifests = manifests
        self.annotations = annotations
    }

    /// The manifest for a platform.
    ///
    /// - Parameter platform: The wanted platform.
    /// - Returns: The first entry whose platform matches, or nil.
    public func manifest(for platform: Platform) -> Descriptor? {
        manifests.first { entry in entry.platform.map(platform.matches) ?? false }
    }
}
