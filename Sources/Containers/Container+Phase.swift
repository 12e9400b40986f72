import ContainerKernel
import Networking
import Synchronization
import SystemSupport

extension Container {
    /// Where a container is in its lifecycle, with the resources that exist only there.
    ///
    /// Every transition happens under ``Container/live``'s lock. A transition that needs
    /// asynchronous work (spawning the process, tearing the container down) first reserves a
    /// transitional phase, so that concurrent callers see one answer instead of each doing the
    /// work: two `start()` calls spawn once, a `remove()` during a start acts on its outcome,
    /// nothing starts once a removal has begun.
    enum Phase: Sendable {
        /// Nothing runs: created or exited (the record's status says which).
        case idle
        /// A ``Container/start()`` is spawning the process. Callers arriving meanwhile join it:
        /// another `start()` gets its result; `stop`, `wait` and `remove` then act on its outcome.
        case starting(joiners: [CheckedContinuation<Result<Void, ContainerError>?, Never>])
        /// The process runs, or is frozen (the record's status is ``ContainerStatus/paused``).
        case running(Run)
        /// ``Container/remove(force:)`` is tearing the container down; nothing starts, execs or
        /// updates any more. `run` is the run being killed until it has ended; `joiners` are
        /// other `remove` calls, resumed once the files are gone.
        case removing(Run?, joiners: [CheckedContinuation<Void, Never>])
        /// The files are gone.
        case removed
    }

    /// What exists while the container's process runs; all of it ends with the process.
    struct Run: Sendable {
        let process: ProcessHandle
        /// The published ports' listeners, bound before the process started.
        var forwarders: [PortForwarder] = []
        /// Copies stdout and stderr into the log (none for a supervised run: the supervisor writes it).
        var logDrain: Task<Void, Never>?
        /// The output stream of a run with ``OutputDestination/stream``, until the start hands
        /// it to `Live.output` for the reader.
        var output: ContainerOutput?
        var health: Task<Void, Never>?
        /// How the run ended, set once its end is recorded; what ``Container/wait(timeout:)`` waits for.
        let ended = Outcome<ExitStatus>()
        /// Taken over from another process or an earlier runtime (``Container/hold(_:)``):
        /// only the process that started a run applies the restart policy to it.
        var adopted = false
        /// Kills the run at ``ContainerConfiguration/timeout``; cancelled when the run ends.
        var deadline: Task<Void, Never>?
        /// The deadline killed it: the run ends with `ExitStatus.timedOut`.
        var timedOut = false
        /// Ended on request (stop, remove, the deadline): the restart policy does not restart it.
        var stopRequested = false

        var cgroup: Cgroup? { process.cgroup }
    }

    /// The container's mutable state: the persisted record and the phase, changed together.
    struct Live: Sendable {
        var record: ContainerRecord
        var phase: Phase = .idle
        /// How the last run ended, for ``Container/wait(timeout:)`` after it.
        var lastExit: ExitStatus?
        /// The output of the last run started with ``OutputDestination/stream``, until
        /// ``Container/output()`` takes it (or the next start replaces it).
        var output: ContainerOutput?

        /// The state as error messages name it: the record's status, or the transition underway.
        var stateName: String {
            switch phase {
            case .idle, .running: record.state.status.rawValue
            case .starting: "starting"
            case .removing: "removing"
            case .removed: "removed"
            }
        }

        /// The error for `operation` refused in the current state (`cannot pause exited container`).
        func refusal(_ operation: String) -> ContainerError {
            ContainerError(code: .invalidState, container: record.name, detail: "cannot \(operation) \(stateName) container")
        }

        /// Leaves ``Phase/starting`` for ``Phase/idle`` and returns the callers that joined the start.
        mutating func endStart() -> [CheckedContinuation<Result<Void, ContainerError>?, Never>] {
            defer { phase = .idle }
            guard case .starting(let joiners) = phase else { return [] }
            return joiners
        }

        /// The current run, when it is the run of `process`.
        func run(of process: ProcessHandle) -> Run? {
            switch phase {
            case .running(let run), .removing(let run?, _): run.process === process ? run : nil
            default: nil
            }
        }
    }

    /// The current run and its status, for `operation`, which needs the container in one of
    /// `statuses`.
    ///
    /// - Throws: ``ContainerError/Code/invalidState`` naming the operation and the state.
    func requireRun(_ operation: String, in statuses: Set<ContainerStatus> = [.running, .paused])
        throws(ContainerError) -> (run: Run, record: ContainerRecord)
    {
        try live.withLock { live throws(ContainerError) in
            guard case .running(let run) = live.phase, statuses.contains(live.record.state.status) else {
                throw live.refusal(operation)
            }
            return (run, live.record)
        }
    }

    /// The cgroup of `run`, for `operation`; a run adopted from a supervisor whose cgroup
    /// could not be found has none.
    ///
    /// - Throws: ``ContainerError/Code/invalidState``.
    func cgroup(of run: Run, for operation: String) throws(ContainerError) -> Cgroup {
        guard let cgroup = run.cgroup else {
            throw ContainerError(code: .invalidState, container: name, detail: "cannot \(operation) a container without a cgroup:")
        }
        return cgroup
    }

    /// Changes the state and writes the record, under the lock, so that records reach the disk
    /// in the order of the changes. An observed container's record is its owner's to write;
    /// a container being removed has no files to write to.
    @discardableResult
    func update<T: Sendable>(_ change: (inout Live) -> T) -> T {
        live.withLock { live in
            let result = change(&live)
            switch live.phase {
            case .removing, .removed: break
            case .idle, .starting, .running:
                guard !observed else { break }
                do { try write(live.record) } catch {
                    runtime.logger.warning("could not persist container state", metadata: ["error": "\(error)"])
                }
            }
            return result
        }
    }

    /// Waits for the start underway to end.
    ///
    /// - Returns: Its result, or `nil` when no start was underway any more.
    func joinStart() async -> Result<Void, ContainerError>? {
        await withCheckedContinuation { (continuation: CheckedContinuation<Result<Void, ContainerError>?, Never>) in
            let joined = live.withLock { live in
                guard case .starting(var joiners) = live.phase else { return false }
                joiners.append(continuation)
                live.phase = .starting(joiners: joiners)
                return true
            }
            if !joined { continuation.resume(returning: nil) }
        }
    }

    /// Waits for the removal underway to end (at once when none is).
    func joinRemoval() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let joined = live.withLock { live in
                guard case .removing(let run, var joiners) = live.phase else { return false }
                joiners.append(continuation)
                live.phase = .removing(run, joiners: joiners)
                return true
            }
            if !joined { continuation.resume() }
        }
    }
}
