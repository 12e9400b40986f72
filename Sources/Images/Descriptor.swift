/// A pointer to content: its media type, digest and size, plus optional annotations, platform
/// and alternative URLs (OCI image spec, "Content Descriptors").
public struct Descriptor: Sendable, Hashable, Codable {
    /// What the content is.
    public var mediaType: MediaType
    /// The content's digest.
    public var digest: Digest
    /// The content's length in bytes.
    public var size: Int64
    /// Other places the content can be fetched from (foreign layers), if any.
    public var urls: [String]?
    /// Free-form metadata, for example `org.opencontainers.image.ref.name`.
    public var annotations: [String: String]?
    /// The platform a manifest in an index is for.
    public var platform: Platform?
    /// The artifact type of an artifact manifest, if any.
    public var artifactType: String?

    /// Creates a descriptor.
    ///
    /// - Parameters:
    ///   - mediaType: What the content is.
    ///   - digest: The content's digest.
    ///   - size: The content's length in bytes.
    ///   - annotations: Metadata, if any.
    ///   - platform: The platform, for manifests in an index.
    public init(
        mediaType: MediaType, digest: Digest, size: Int64, annotations: [String: String]? = nil,
        platform: Platform? = nil
    ) {
        self.mediaType = mediaType
        self.digest = digest
        self.size = size
        self.annotations = annotations
        self.platform = platform
    }

    /// The annotation an OCI image layout's `index.json` uses for tags.
    public static let refNameAnnotation = "org.opencontainers.image.ref.name"
}
