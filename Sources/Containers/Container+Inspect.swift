public import FoundationEssentials

/// What `docker inspect` shows of a container, as a Codable value.
public struct ContainerInspection: Sendable, Codable {
    /// The id.
    public var id: String
    /// The name.
    public var name: String
    /// When it was created.
    public var created: Date
    /// The image id.
    public var image: String
    /// The image reference it was created from.
    public var imageReference: String?
    /// The configuration.
    public var configuration: ContainerConfiguration
    /// The state.
    public var state: ContainerState
    /// The container's directory (root filesystem, logs, state).
    public var directory: String

    /// Pretty-printed JSON, as `docker inspect` prints it.
    public var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return (try? encoder.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }
}

extension Container {
    /// A description of the container (`docker inspect`).
    public func inspect() -> ContainerInspection {
        let record = live.withLock { $0.record }
        return ContainerInspection(
            id: record.id, name: record.name, created: record.created, image: record.imageID,
            imageReference: record.imageReference, configuration: record.configuration, state: record.state,
            directory: directory)
    }
}
