import FoundationEssentials

/// An image configuration blob (OCI `application/vnd.oci.image.config.v1+json`, Docker
/// `application/vnd.docker.container.image.v1+json`): the platform, the runtime defaults a
/// container starts with, the layer diff IDs and the build history.
///
/// Berth stores configuration blobs byte for byte as pulled; this type is a typed view. Fields
/// it does not model are dropped when Berth writes a new configuration (``ImageStore/commit(_:layer:as:history:change:)``).
public struct ImageConfig: Sendable, Hashable, Codable {
    /// The CPU architecture.
    public var architecture: String
    /// The operating system.
    public var os: String
    /// The CPU variant, if any.
    public var variant: String?
    /// When the image was created (RFC 3339), if recorded.
    public var created: String?
    /// Who created the image, if recorded.
    public var author: String?
    /// The runtime defaults for a container started from the image.
    public var config: RuntimeConfig?
    /// The layers' uncompressed digests, base layer first.
    public var rootfs: RootFS
    /// One entry per build step, including steps that made no layer.
    public var history: [History]?

    /// Creates a configuration.
    ///
    /// - Parameters:
    ///   - platform: The platform the image is for.
    ///   - config: The runtime defaults.
    ///   - diffIDs: The layers' uncompressed digests, base layer first.
    ///   - history: The build history.
    public init(platform: Platform, config: RuntimeConfig? = nil, diffIDs: [Digest], history: [History] = []) {
        architecture = platform.architecture
        os = platform.os
        variant = platform.variant
        self.config = config
        rootfs = RootFS(type: "layers", diffIDs: diffIDs)
        self.history = history
    }

    /// The platform this configuration declares.
    public var platform: Platform { Platform(os: os, architecture: architecture, variant: variant) }

    /// The `rootfs` object: the layers' uncompressed digests.
    public struct RootFS: Sendable, Hashable, Codable {
        /// Always `layers`.
        public var type: String
        /// The uncompressed digest of each layer, base layer first.
        public var diffIDs: [Digest]

        enum CodingKeys: String, CodingKey {
            case type
            case diffIDs = "diff_ids"
        }
    }

    /// One build step.
    public struct History: Sendable, Hashable, Codable {
        /// When the step ran (RFC 3339).
        public var created: String?
        /// The command of the step, for example `RUN apk add curl`.
        public var createdBy: String?
        /// Who made the step.
        public var author: String?
        /// A free-form comment.
        public var comment: String?
        /// True when the step produced no layer.
        public var emptyLayer: Bool?

        /// Creates a history entry.
        ///
        /// - Parameters:
        ///   - created: When the step ran (RFC 3339).
        ///   - createdBy: The command of the step.
        ///   - comment: A free-form comment.
        ///   - emptyLayer: True when the step produced no layer.
        public init(created: String? = nil, createdBy: String? = nil, comment: String? = nil, emptyLayer: Bool? = nil) {
            self.created = created
            self.createdBy = createdBy
            self.comment = comment
            self.emptyLayer = emptyLayer
        }

        enum CodingKeys: String, CodingKey {
            case created, author, comment
            case createdBy = "created_by"
            case emptyLayer = "empty_layer"
        }
    }

    /// The current time in RFC 3339, as config and history timestamps use it.
    static func now() -> String {
        Date().formatted(.iso8601)
    }
}

/// The runtime part of an image configuration: what a container gets unless the caller overrides it.
public struct RuntimeConfig: Sendable, Hashable, Codable {
    /// The user (`name`, `uid`, `uid:gid`, `name:group`) the process runs as.
    public var user: String?
    /// Ports the image says it listens on, as `port/protocol` (`80/tcp`).
    public var exposedPorts: Set<String>?
    /// Environment variables as `NAME=value`.
    public var env: [String]?
    /// The executable and leading arguments.
    public var entrypoint: [String]?
    /// The default arguments (or command when there is no entrypoint).
    public var cmd: [String]?
    /// Directories the image expects to be volumes.
    public var volumes: Set<String>?
    /// The working directory.
    public var workingDir: String?
    /// Labels.
    public var labels: [String: String]?
    /// The signal that stops the container, such as `SIGTERM` or `15`.
    public var stopSignal: String?
    /// The health check (a Docker extension), if any.
    public var healthcheck: Healthcheck?
    /// Whether `cmd`/`entrypoint` are already escaped (Windows images).
    public var argsEscaped: Bool?

    /// Creates runtime defaults; every field is optional.
    public init(
        user: String? = nil, exposedPorts: Set<String>? = nil, env: [String]? = nil, entrypoint: [String]? = nil,
        cmd: [String]? = nil, volumes: Set<String>? = nil, workingDir: String? = nil, labels: [String: String]? = nil,
        stopSignal: String? = nil, healthcheck: Healthcheck? = nil
    ) {
        self.user = user
        self.exposedPorts = exposedPorts
        self.env = env
        self.entrypoint = entrypoint
        self.cmd = cmd
        self.volumes = volumes
        self.workingDir = workingDir
        self.labels = labels
        self.stopSignal = stopSignal
        self.healthcheck = healthcheck
    }

    /// A container health check (Docker's `HEALTHCHECK`).
    public struct Healthcheck: Sendable, Hashable, Codable {
        /// `["NONE"]`, `["CMD", args…]` or `["CMD-SHELL", command]`.
        public var test: [String]?
        /// Time between checks, in nanoseconds.
        public var interval: Int64?
        /// Time one check may take, in nanoseconds.
        public var timeout: Int64?
        /// Grace period after start, in nanoseconds.
        public var startPeriod: Int64?
        /// Consecutive failures before the container is unhealthy.
        public var retries: Int?

        enum CodingKeys: String, CodingKey {
            case test = "Test", interval = "Interval", timeout = "Timeout", startPeriod = "StartPeriod"
            case retries = "Retries"
        }
    }

    enum CodingKeys: String, CodingKey {
        case user = "User", exposedPorts = "ExposedPorts", env = "Env", entrypoint = "Entrypoint", cmd = "Cmd"
        case volumes = "Volumes", workingDir = "WorkingDir", labels = "Labels", stopSignal = "StopSignal"
        case healthcheck = "Healthcheck", argsEscaped = "ArgsEscaped"
    }

    /// JSON `{}`: the value type of the `ExposedPorts` and `Volumes` objects.
    private struct Empty: Codable {}

    /// Decodes the configuration; `ExposedPorts` and `Volumes` are JSON objects whose keys are the values.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        user = try c.decodeIfPresent(String.self, forKey: .user)
        exposedPorts = try c.decodeIfPresent([String: Empty].self, forKey: .exposedPorts).map { Set($0.keys) }
        env = try c.decodeIfPresent([String].self, forKey: .env)
        entrypoint = try c.decodeIfPresent([String].self, forKey: .entrypoint)
        cmd = try c.decodeIfPresent([String].self, forKey: .cmd)
        volumes = try c.decodeIfPresent([String: Empty].self, forKey: .volumes).map { Set($0.keys) }
        workingDir = try c.decodeIfPresent(String.self, forKey: .workingDir)
        labels = try c.decodeIfPresent([String: String].self, forKey: .labels)
        stopSignal = try c.decodeIfPresent(String.self, forKey: .stopSignal)
        healthcheck = try c.decodeIfPresent(Healthcheck.self, forKey: .healthcheck)
        argsEscaped = try c.decodeIfPresent(Bool.self, forKey: .argsEscaped)
    }

    /// Encodes the configuration in the image-spec JSON shape.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(user, forKey: .user)
        try c.encodeIfPresent(exposedPorts.map { Dictionary(uniqueKeysWithValues: $0.map { ($0, Empty()) }) }, forKey: .exposedPorts)
        try c.encodeIfPresent(env, forKey: .env)
        try c.encodeIfPresent(entrypoint, forKey: .entrypoint)
        try c.encodeIfPresent(cmd, forKey: .cmd)
        try c.encodeIfPresent(volumes.map { Dictionary(uniqueKeysWithValues: $0.map { ($0, Empty()) }) }, forKey: .volumes)
        try c.encodeIfPresent(workingDir, forKey: .workingDir)
        try c.encodeIfPresent(labels, forKey: .labels)
        try c.encodeIfPresent(stopSignal, forKey: .stopSignal)
        try c.encodeIfPresent(healthcheck, forKey: .healthcheck)
        try c.encodeIfPresent(argsEscaped, forKey: .argsEscaped)
    }
}
