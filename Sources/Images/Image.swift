/// An image in the store: its manifest, its configuration and the name it was found by.
///
/// ``id`` is the configuration digest, as Docker reports it; ``digest`` is the manifest digest,
/// which stays the same through push and pull.
public struct Image: Sendable, Hashable {
    /// The reference the image was resolved through, if it was resolved by name.
    public var reference: ImageReference?
    /// The manifest's descriptor.
    public var descriptor: Descriptor
    /// The manifest.
    public var manifest: ImageManifest
    /// The configuration.
    public var config: ImageConfig

    /// The image ID: the configuration digest.
    public var id: Digest { manifest.config.digest }
    /// The manifest digest.
    public var digest: Digest { descriptor.digest }
    /// The layer blobs, base layer first.
    public var layers: [Descriptor] { manifest.layers }
    /// The layers' uncompressed digests, base layer first.
    public var diffIDs: [Digest] { config.rootfs.diffIDs }
    /// The compressed size of the configuration and all layers.
    public var size: Int64 { manifest.config.size + manifest.layers.reduce(0) { $0 + $1.size } }
}

/// Progress of one blob in a pull or push, for a CLI's progress bars.
public struct TransferProgress: Sendable, Hashable {
    /// What happened.
    public enum Event: Sendable, Hashable {
        /// The blob was already present (pull) or in the registry (push); nothing was transferred.
        case skipped
        /// Some bytes were transferred; ``TransferProgress/completed`` says how many in total.
        case transferring
        /// The blob is complete and verified.
        case done
    }
    /// The blob.
    public var digest: Digest
    /// What happened.
    public var event: Event
    /// Bytes transferred so far.
    public var completed: Int64
    /// The blob's size.
    public var total: Int64
}
