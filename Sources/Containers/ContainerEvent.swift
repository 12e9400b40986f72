public import FoundationEssentials
import Synchronization

/// Something that happened to a container, as `docker events` reports it.
public struct ContainerEvent: Sendable, Hashable {
    /// What happened.
    public enum Action: String, Sendable, Hashable {
        case create, start, die, oom, kill, stop, pause, unpause, rename, destroy, restart
        case healthStatus = "health_status"
        case execStart = "exec_start"
    }
    /// What happened.
    public var action: Action
    /// The container's id.
    public var containerID: String
    /// The container's name at the time.
    public var name: String
    /// Details: `exitCode` for `die`, `health` for `health_status`, `signal` for `kill`.
    public var attributes: [String: String]
    /// When it happened.
    public var time: Date
}

/// Fans events out to every subscriber.
final class EventHub: Sendable {
    private let subscribers = Mutex<[Int: AsyncStream<ContainerEvent>.Continuation]>([:])
    private let nextID = Atomic<Int>(0)

    func publish(_ event: ContainerEvent) {
        for continuation in subscribers.withLock({ Array($0.values) }) { continuation.yield(event) }
    }

    func subscribe() -> AsyncStream<ContainerEvent> {
        let (stream, continuation) = AsyncStream<ContainerEvent>.makeStream()
        let id = nextID.add(1, ordering: .relaxed).newValue
        subscribers.withLock { $0[id] = continuation }
        continuation.onTermination = { [weak self] _ in _ = self?.subscribers.withLock { $0.removeValue(forKey: id) } }
        return stream
    }
}
