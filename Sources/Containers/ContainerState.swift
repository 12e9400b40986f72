public import FoundationEssentials
public import Networking

/// Where a container is in its lifecycle.
public enum ContainerStatus: String, Sendable, Codable, Hashable, CustomStringConvertible {
    /// Created, never started (or its root filesystem is ready for a start).
    case created
    /// Its process runs.
    case running
    /// Its processes are frozen (cgroup freezer).
    case paused
    /// Its process has exited; it can be started again or removed.
    case exited

    public var description: String { rawValue }
}

/// The health of a container with a health check.
public enum HealthStatus: String, Sendable, Codable, Hashable {
    /// Within the start period, or no check has finished yet.
    case starting
    /// The last check passed.
    case healthy
    /// `retries` consecutive checks failed.
    case unhealthy
}

/// A container's state, as `docker inspect` shows it under `State`.
public struct ContainerState: Sendable, Codable, Hashable {
    /// The lifecycle state.
    public var status: ContainerStatus
    /// The process id (in the host's pid namespace) while running.
    public var pid: Int32?
    /// The last exit code (128 + signal for a signal, 137 for an OOM kill).
    public var exitCode: Int32?
    /// Whether the last run was ended by the OOM killer.
    public var oomKilled: Bool
    /// When the last run started.
    public var startedAt: Date?
    /// When the last run ended.
    public var finishedAt: Date?
    /// How many times the restart policy restarted the container.
    public var restartCount: Int
    /// The health, for containers with a health check.
    public var health: HealthStatus?
    /// Why the last start failed, if it did.
    public var error: String?
    /// The published ports of the current run, with the host ports actually bound.
    public var publishedPorts: [PortMapping]
    /// The container's IPv4 address on each bridge network it is attached to.
    public var addresses: [String: String]
    /// When its lease ends (``Container/setExpiry(_:)``): the next sweep after this
    /// (``ContainerRuntime/pruneSessions()``) removes it; `nil` keeps it.
    public var expires: Date?

    init() {
        status = .created
        oomKilled = false
        restartCount = 0
        publishedPorts = []
        addresses = [:]
    }
}

/// What Berth persists of a container under `<root>/containers/<id>/container.json`.
struct ContainerRecord: Sendable, Codable {
    var id: String
    var name: String
    var created: Date
    var configuration: ContainerConfiguration
    var imageID: String
    var imageReference: String?
    var topChainID: String?
    var state: ContainerState
    /// The process that owns the container (embedded lifetime) and its start time, which
    /// tells a live owner from a reused pid.
    var ownerPID: Int32
    var ownerStartTime: UInt64
    /// The supervisor of a detached container's current run.
    var supervisor: ProcessIdentity?
}

/// A process, told apart from a later one with the same pid by its start time.
struct ProcessIdentity: Sendable, Codable, Hashable {
    var pid: Int32
    var startTime: UInt64
}
