public import ContainerKernel
public import FoundationEssentials
import Glibc
import Images
import Layers
public import Networking
import Synchronization
import SystemSupport

/// One container: its configuration, its root filesystem and, while it runs, its process.
///
/// Every operation checks the state first and throws ``ContainerError/Code/invalidState``
/// naming the operation and the state (`cannot pause exited container`). A running embedded
/// container of another live process, as ``ContainerRuntime/list(all:labels:name:status:)``
/// shows it, can be inspected, exec'd into, signalled, stopped and waited for; ``start()``,
/// ``pause()``, ``resume()``, ``update(resources:)``, ``rename(to:)`` and
/// ``remove(force:)`` throw ``ContainerError/Code/notOwner`` for it.
///
/// ```swift
/// try await Container.withRunning(image: "busybox", command: ["sleep", "60"]) { container in
///     let result = try await container.exec(["cat", "/etc/hostname"])
///     print(result.standardOutput)
/// }   // stopped and removed here, even if the body throws or is cancelled
/// ```
public final class Container: Sendable {
    /// The 64-hex-digit id.
    public let id: String
    /// The runtime the container belongs to.
    public let runtime: ContainerRuntime
    /// The directory holding the container's state, root filesystem and logs.
    public let directory: String
    let image: Image

    let live: Mutex<Live>
    let logs: LogFile
    /// Whether another live process owns this (embedded) container and this one only observes it.
    let observed: Bool

    init(runtime: ContainerRuntime, record: ContainerRecord, image: Image, directory: String, observed: Bool = false) {
        self.id = record.id
        self.runtime = runtime
        self.image = image
        self.directory = directory
        self.observed = observed
        self.live = Mutex(Live(record: record))
        self.logs = LogFile(path: directory + "/container.log", limits: record.configuration.logLimits)
    }

    /// The name.
    public var name: String { live.withLock { $0.record.name } }
    /// The configuration it was created with.
    public var configuration: ContainerConfiguration { live.withLock { $0.record.configuration } }
    /// The current state.
    public var state: ContainerState { live.withLock { $0.record.state } }
    /// When it was created.
    public var created: Date { live.withLock { $0.record.created } }
    /// The id of the image it runs.
    public var imageID: String { live.withLock { $0.record.imageID } }

    static func cgroupPath(_ id: String) -> String { "berth/\(id)" }

    // MARK: Creation and persistence

    static func create(
        runtime: ContainerRuntime, id: String, name: String, configuration: ContainerConfiguration, image: Image,
        topChainID: String?
    ) async throws(ContainerError) -> Container {
        let directory = runtime.containersDirectory + "/" + id
        let record = ContainerRecord(
            id: id, name: name, created: Date(), configuration: configuration, imageID: image.id.description,
            imageReference: image.reference?.description, topChainID: topChainID, state: ContainerState(),
            ownerPID: getpid(), ownerStartTime: processStartTime(getpid()) ?? 0)
        let container = Container(runtime: runtime, record: record, image: image, directory: directory)
        do throws(ContainerError) {
            try ContainerError.from(try makeDirectories(directory, mode: 0o711))
            try container.persist()
            _ = try wrapping("prepare the root filesystem of", container: name) {
                try runtime.layers.createSnapshot(topChainID: topChainID, at: directory,
                                                  owners: configuration.userNamespace?.ownerShift)
            }
            // After the snapshot: the copy-up reads the image's content from the root filesystem.
            try await runtime.prepareVolumes(for: configuration, rootfs: directory + "/rootfs")
            if let mode = try runtime.networkMode(for: configuration) {
                let hostname = configuration.hostname ?? String(id.prefix(12))
                _ = try wrapping("prepare the network of", container: name) {
                    try runtime.networks.prepareSandbox(containerID: id, hostname: hostname, mode: mode,
                                                        aliases: [name] + configuration.networkAliases)
                }
            } else {
                try container.writeEtcFiles()
            }
        } catch {
            try? container.destroyFiles()
            throw error
        }
        return container
    }

    static func loadRecord(_ directory: String) throws(ContainerError) -> ContainerRecord {
        let bytes = try ContainerError.from(try readWholeFile(directory + "/container.json"))
        return try wrapping("decode \(directory)/container.json") { try jsonDecoder.decode(ContainerRecord.self, from: Data(bytes)) }
    }

    func persist() throws(ContainerError) {
        try write(live.withLock { $0.record })
    }

    func write(_ record: ContainerRecord) throws(ContainerError) {
        let bytes = try wrapping("encode the state of", container: record.name) { try jsonEncoder.encode(record) }
        try ContainerError.from(try writeAtomically(directory + "/container.json", Array(bytes), durable: false))
    }

    /// The container's network sandbox, when it is on a bridge network or shares another's.
    var sandbox: Sandbox? { try? runtime.networks.sandbox(containerID: id) }

    /// Removes the network, the root filesystem and every file of the container.
    func destroyFiles() throws(ContainerError) {
        try wrapping("release the network of", container: id) { try runtime.networks.releaseSandbox(containerID: id) }
        if let snapshot = runtime.layers.snapshot(at: directory) {
            try wrapping("remove the root filesystem of", container: id) { try snapshot.remove() }
        }
        try ContainerError.from(try removeTree(directory))
    }

    private func writeEtcFiles() throws(ContainerError) {
        let record = live.withLock { $0.record }
        let hostname = record.configuration.hostname ?? String(record.id.prefix(12))
        try ContainerError.from(try writeAtomically(directory + "/hostname", Array("\(hostname)\n".utf8), durable: false))
        let hosts = """
            127.0.0.1\tlocalhost
            ::1\tlocalhost ip6-localhost ip6-loopback
            127.0.1.1\t\(hostname)

            """
        try ContainerError.from(try writeAtomically(directory + "/hosts", Array(hosts.utf8), durable: false))
        // Loopback nameservers of the host mean nothing in another network namespace.
        let host = (try? readWholeFile("/etc/resolv.conf")).map { String(decoding: $0, as: UTF8.self) } ?? ""
        let resolv = host.split(separator: "\n").filter { line in
            !(line.hasPrefix("nameserver 127.") || line.hasPrefix("nameserver ::1"))
        }.joined(separator: "\n")
        try ContainerError.from(try writeAtomically(directory + "/resolv.conf", Array((resolv + "\n").utf8), durable: false))
    }

    // MARK: Lifecycle

    /// Starts the container's process (`docker start`).
    ///
    /// As with Docker, starting a running container does nothing and succeeds. Concurrent
    /// calls start the process once: a call made while another start is underway waits for it
    /// and returns (or throws) its result.
    ///
    /// - Throws: ``ContainerError``: ``ContainerError/Code/invalidState`` for a paused
    ///   container or one being removed; ``ContainerError/Code/kernel`` when the process cannot
    ///   start (its ``ContainerError/kernelError`` names the init stage, such as `exec`).
    public func start() async throws(ContainerError) {
        try requireOwnership("start")
        enum Next { case spawn(ContainerRecord), join, nothing }
        let next = try live.withLock { live throws(ContainerError) -> Next in
            switch live.phase {
            case .idle:
                live.phase = .starting(joiners: [])
                return .spawn(live.record)
            case .starting: return .join
            case .running where live.record.state.status == .running: return .nothing
            case .running, .removing, .removed: throw live.refusal("start")
            }
        }
        switch next {
        case .nothing: return
        case .join:
            // No start underway any more: it ended between the two looks; decide again.
            guard let result = await joinStart() else { return try await start() }
            try result.get()
        case .spawn(let record):
            let run: Run
            do throws(ContainerError) {
                run = try await launch(record)
            } catch {
                let joiners = update { live in
                    live.record.state.error = "\(error)"
                    return live.endStart()
                }
                joiners.forEach { $0.resume(returning: .failure(error)) }
                throw error
            }
            let joiners = update { live in
                let joiners = live.endStart()
                // The output is the reader's alone: a copy kept by the run would keep the
                // reader alive, so a reader that goes away would still hold the process back.
                var run = run
                live.output = run.output
                run.output = nil
                live.phase = .running(run)
                live.lastExit = nil
                live.record.state.status = .running
                live.record.state.pid = run.process.pid
                live.record.supervisor = run.process.supervisorPID.map {
                    ProcessIdentity(pid: $0, startTime: processStartTime($0) ?? 0)
                }
                live.record.state.startedAt = Date()
                live.record.state.error = nil
                live.record.state.oomKilled = false
                live.record.state.publishedPorts = run.forwarders.map { forwarder in
                    var bound = forwarder.mapping
                    bound.hostPort = forwarder.hostPort
                    return bound
                }
                live.record.state.addresses = Dictionary(
                    (sandbox?.endpoints ?? []).map { ($0.networkName, "\($0.ipv4Address)") },
                    uniquingKeysWith: { first, _ in first })
                if run.health != nil { live.record.state.health = .starting }
                return joiners
            }
            runtime.publish(.start, self)
            joiners.forEach { $0.resume(returning: .success(())) }
            Task.detached { [self] in await self.watch(run.process) }
            if let timeout = record.configuration.timeout { keep(run.process, within: timeout) }
        }
    }

    /// Spawns the process of a run and what goes with it: published ports, the log drain (or
    /// the output stream), the health checks.
    private func launch(_ record: ContainerRecord) async throws(ContainerError) -> Run {
        var spec = try makeProcessSpec(record)
        if record.configuration.lifetime == .detached {
            let ownerOnly = [("published ports", !record.configuration.ports.isEmpty),
                             ("a deadline", record.configuration.timeout != nil),
                             ("output other than the log", record.configuration.output != .log)]
            if let (what, _) = ownerOnly.first(where: { $0.1 }) {
                throw ContainerError(code: .invalidArgument, container: record.name,
                                     detail: "start: \(what) need the owning process and cannot be used with a detached container:")
            }
            spec.supervision = Supervision(statusPath: statusPath, logPath: logs.path,
                                           logMaximumSize: logs.limits.maximumSize,
                                           logMaximumFiles: logs.limits.maximumFiles)
            unlink(statusPath)  // the last run's
        }
        if let hook = record.configuration.processSpecHook {
            do {
                try await hook(&spec)
            } catch {
                throw ContainerError(code: .invalidArgument, container: record.name,
                                     detail: "start: the process spec hook failed for", underlying: error)
            }
        }
        // Ports are bound before the process starts: a taken port fails the start, not later.
        let forwarders = try publishPorts(record.configuration.ports, sandbox: sandbox)
        let process: ProcessHandle
        do {
            process = try await ProcessHandle.spawn(spec)
        } catch {
            forwarders.forEach { $0.stop() }
            throw ContainerError(code: .kernel, container: record.name, detail: "start", underlying: error)
        }
        let output = ContainerOutput(of: process)
        switch record.configuration.output {
        case .log:
            return Run(process: process, forwarders: forwarders, logDrain: drain(output), health: healthChecks())
        case .stream:
            return Run(process: process, forwarders: forwarders, output: output, health: healthChecks())
        case .discard:
            // Only a terminal's output reaches here (without one, stdout and stderr are /dev/null);
            // a limit of nothing has the I/O thread drop it as it reads.
            return Run(process: process, forwarders: forwarders, logDrain: Task.detached { _ = await output.collect(limit: 0) },
                       health: healthChecks())
        }
    }

    /// Kills the run of `process` at its deadline, unless it has ended by then.
    private func keep(_ process: ProcessHandle, within timeout: Duration) {
        let deadline = Task.detached { [self] in
            guard (try? await Task.sleep(for: timeout)) != nil else { return }
            let status = live.withLock { live -> ContainerStatus? in
                guard case .running(var run) = live.phase, run.process === process else { return nil }
                run.timedOut = true
                run.stopRequested = true
                live.phase = .running(run)
                return live.record.state.status
            }
            guard let status else { return }
            try? process.signal(.kill)
            // A frozen process cannot die under the v1 freezer: thaw it once it is killed.
            if status == .paused { try? await process.cgroup?.thaw() }
        }
        let kept = live.withLock { live in
            guard case .running(var run) = live.phase, run.process === process else { return false }
            run.deadline = deadline
            live.phase = .running(run)
            return true
        }
        if !kept { deadline.cancel() }
    }

    /// Waits for the current run to end; returns at once for a container that is not running
    /// (after a start underway, if there is one).
    ///
    /// It waits until the run's end is recorded: the process has exited, its output is in the
    /// log (or its stream has ended), and its cgroup is gone. The calling task is suspended
    /// meanwhile, never blocking a thread. Giving up (the deadline, or cancellation of the
    /// calling task) leaves the container running; to bound the run itself, set
    /// ``ContainerConfiguration/timeout``.
    ///
    /// - Parameter timeout: How long to wait at most; `nil` waits as long as the run lasts.
    /// - Returns: How the process ended (`.exited(0)` for a container never started).
    /// - Throws: ``ContainerError``: ``ContainerError/Code/timeout`` when `timeout` passed
    ///   first, ``ContainerError/Code/cancelled`` when the calling task was cancelled first.
    @discardableResult
    public func wait(timeout: Duration? = nil) async throws(ContainerError) -> ExitStatus {
        switch await currentRun() {
        case .ended(let status): return status
        case .running(let ended):
            switch await ended.wait(timeout: timeout) {
            case .success(let status): return status
            case .failure(.deadline):
                throw ContainerError(code: .timeout, container: name, detail: "wait for (still running after \(timeout ?? .zero))")
            case .failure(.cancelled):
                throw ContainerError(code: .cancelled, container: name, detail: "wait for")
            }
        }
    }

    /// Waits for the end of the current run whatever happens to the calling task: for the
    /// operations (stop, remove) that must not return before the run is over.
    func ended() async -> ExitStatus {
        switch await currentRun() {
        case .ended(let status): status
        case .running(let ended): await ended.uncancellableValue()
        }
    }

    private enum RunEnd { case ended(ExitStatus), running(Outcome<ExitStatus>) }

    /// The end of the current run (after a start underway, if there is one), or how the last one ended.
    private func currentRun() async -> RunEnd {
        enum Next { case now(RunEnd), afterStart }
        while true {
            let next = live.withLock { live -> Next in
                switch live.phase {
                case .running(let run), .removing(let run?, _): .now(.running(run.ended))
                case .starting: .afterStart
                case .idle, .removing(nil, _), .removed: .now(.ended(live.lastExit ?? .exited(live.record.state.exitCode ?? 0)))
                }
            }
            switch next {
            case .now(let end): return end
            case .afterStart: _ = await joinStart()
            }
        }
    }

    /// Sends the stop signal, then `SIGKILL` after `timeout` (`docker stop`).
    ///
    /// A call made while a start is underway waits for it and then stops what it started.
    ///
    /// - Parameter timeout: The grace period; `nil` uses the configuration's ``ContainerConfiguration/stopTimeout``.
    /// - Returns: How the process ended.
    /// - Throws: ``ContainerError/Code/invalidState`` unless running or paused.
    @discardableResult
    public func stop(timeout: Duration? = nil) async throws(ContainerError) -> ExitStatus {
        let found = try live.withLock { live throws(ContainerError) -> (ProcessHandle, ContainerStatus)? in
            switch live.phase {
            case .starting: return nil
            case .running(var run):
                run.stopRequested = true
                live.phase = .running(run)
                return (run.process, live.record.state.status)
            case .idle, .removing, .removed: throw live.refusal("stop")
            }
        }
        guard let (process, status) = found else {
            _ = await joinStart()
            return try await stop(timeout: timeout)
        }
        let signal = try stopSignal()
        if status == .paused { try? await resume() }
        try? process.signal(signal)
        let grace = timeout ?? .seconds(configuration.stopTimeout)
        await withTaskGroup(of: Bool.self) { group in
            group.addTask { _ = await process.exited(); return true }
            group.addTask { try? await Task.sleep(for: grace); return false }
            // The group waits for both tasks; killing (when the grace period ran out first)
            // is what ends the waiting one.
            if await group.next() == false { try? process.signal(.kill) }
            group.cancelAll()
        }
        runtime.publish(.stop, self)
        return await ended()
    }

    /// Sends a signal to the container's main process (`docker kill`).
    ///
    /// - Parameter signal: The signal, `SIGKILL` by default.
    /// - Throws: ``ContainerError/Code/invalidState`` unless running or paused.
    public func kill(_ signal: Signal = .kill) throws(ContainerError) {
        let (run, record) = try requireRun("kill")
        do {
            try run.process.signal(signal)
        } catch where error.errno == .noSuchProcess {
            // It has exited, and its end is being recorded: as if the end had come first.
            throw ContainerError(code: .invalidState, container: record.name, detail: "cannot kill exited container")
        } catch {
            throw ContainerError(code: .kernel, container: record.name, detail: "kill", underlying: error)
        }
        // A frozen process cannot act on a signal, not even SIGKILL under the v1 freezer: a
        // killed paused container is thawed so it can die, as Docker does.
        if record.state.status == .paused && signal == .kill, let cgroup = run.cgroup {
            Task { try? await cgroup.thaw() }
        }
        runtime.publish(.kill, self, ["signal": "\(signal)"])
    }

    /// Stops (if running) and starts the container again (`docker restart`).
    ///
    /// - Throws: ``ContainerError`` as ``stop(timeout:)`` and ``start()``.
    public func restart(timeout: Duration? = nil) async throws(ContainerError) {
        let status = state.status
        if status == .running || status == .paused { try await stop(timeout: timeout) }
        try await start()
        runtime.publish(.restart, self)
    }

    /// Gives the container a lease that ends at `date` (``ContainerState/expires``): the first
    /// sweep after it (``ContainerRuntime/pruneSessions()``) stops and removes the container,
    /// whatever its state. Setting it again renews the lease; `nil` ends it, keeping the
    /// container. `ContainerTesting`'s reused fixtures live on such a lease.
    ///
    /// - Parameter date: When the lease ends, or `nil`.
    /// - Throws: ``ContainerError/Code/notOwner`` for a running container of another process.
    public func setExpiry(_ date: Date?) throws(ContainerError) {
        try requireOwnership("set the expiry of")
        update { $0.record.state.expires = date }
    }

    /// Freezes every process of the container (`docker pause`).
    ///
    /// - Throws: ``ContainerError/Code/invalidState`` unless running.
    public func pause() async throws(ContainerError) {
        try requireOwnership("pause")
        try await changeFreezing("pause", from: .running, to: .paused) { cgroup in try await cgroup.freeze() }
        runtime.publish(.pause, self)
    }

    /// Thaws a paused container (`docker unpause`).
    ///
    /// - Throws: ``ContainerError/Code/invalidState`` unless paused.
    public func resume() async throws(ContainerError) {
        try requireOwnership("unpause")
        try await changeFreezing("unpause", from: .paused, to: .running) { cgroup in try await cgroup.thaw() }
        runtime.publish(.unpause, self)
    }

    /// Freezes or thaws the run's cgroup and records the new status, unless the run ended meanwhile.
    private func changeFreezing(
        _ operation: String, from: ContainerStatus, to: ContainerStatus, _ change: (Cgroup) async throws -> Void
    ) async throws(ContainerError) {
        let (run, record) = try requireRun(operation, in: [from])
        let cgroup = try cgroup(of: run, for: operation)
        try await wrapping(operation, container: record.name) { try await change(cgroup) }
        update { live in
            if live.run(of: run.process) != nil, case .running = live.phase { live.record.state.status = to }
        }
    }

    /// Removes the container and everything it owns (`docker rm`).
    ///
    /// Removing a removed container does nothing; a call made while another removal is
    /// underway waits for it, and one made while a start is underway acts on its outcome.
    ///
    /// - Parameter force: Kill a running container first (`-f`).
    /// - Throws: ``ContainerError/Code/invalidState`` for a running container without `force`.
    public func remove(force: Bool = false) async throws(ContainerError) {
        try requireOwnership("remove")
        enum Next { case destroy, kill(Run, ContainerStatus), joinStart, joinRemoval, nothing }
        let next = try live.withLock { live throws(ContainerError) -> Next in
            switch live.phase {
            case .idle:
                live.phase = .removing(nil, joiners: [])
                return .destroy
            case .starting: return .joinStart
            case .running(var run):
                guard force else { throw live.refusal("remove") }
                run.stopRequested = true
                live.phase = .removing(run, joiners: [])
                return .kill(run, live.record.state.status)
            case .removing: return .joinRemoval
            case .removed: return .nothing
            }
        }
        switch next {
        case .nothing: return
        case .joinStart:
            _ = await joinStart()
            return try await remove(force: force)
        case .joinRemoval:
            return await joinRemoval()
        case .kill(let run, let status):
            try? run.process.signal(.kill)
            // A frozen process cannot die under the v1 freezer: thaw it once it is killed.
            if status == .paused { try? await run.cgroup?.thaw() }
            _ = await ended()
        case .destroy: break
        }
        runtime.forget(self)
        let destroyed = Result { () throws(ContainerError) in try destroyFiles() }
        let joiners = live.withLock { live -> [CheckedContinuation<Void, Never>] in
            defer {
                live.phase = .removed
                live.output = nil
            }
            guard case .removing(_, let joiners) = live.phase else { return [] }
            return joiners
        }
        joiners.forEach { $0.resume() }
        runtime.publish(.destroy, self)
        try destroyed.get()
    }

    /// Renames the container (`docker rename`).
    ///
    /// - Throws: ``ContainerError/Code/nameInUse`` when another container has the name.
    public func rename(to newName: String) throws(ContainerError) {
        try requireOwnership("rename")
        guard !runtime.isNameTaken(newName, except: id) else {
            throw ContainerError(code: .nameInUse, container: newName, detail: "rename \(name) to")
        }
        update { $0.record.name = newName }
        runtime.publish(.rename, self)
    }

    /// Changes the resource limits of a running container (`docker update`).
    ///
    /// - Parameter resources: The new limits; `nil` fields stay as they are.
    /// - Throws: ``ContainerError/Code/invalidState`` unless running or paused.
    public func update(resources: CgroupResources) throws(ContainerError) {
        try requireOwnership("update")
        let (run, record) = try requireRun("update")
        let cgroup = try cgroup(of: run, for: "update")
        try wrapping("update", container: record.name) { try cgroup.update(resources) }
        update { $0.record.configuration.resources = cgroup.resources }
    }

    /// Refuses what only the owning process may do to an observed container.
    func requireOwnership(_ operation: String) throws(ContainerError) {
        guard observed else { return }
        let owner = live.withLock { $0.record.ownerPID }
        throw ContainerError(code: .notOwner, container: name,
                             detail: "cannot \(operation) a container embedded in process \(owner):")
    }

    // MARK: Exit handling

    /// Where a detached run's supervisor records the exit status.
    var statusPath: String { directory + "/exit-status" }

    /// Takes a detached run that another process started (or this process before a restart of
    /// the runtime), or observes another process's embedded run, and watches it like one of its own.
    func hold(_ process: ProcessHandle) {
        live.withLock { live in
            live.phase = .running(Run(process: process, adopted: true))
            live.lastExit = nil
        }
        Task.detached { [self] in await self.watch(process) }
    }

    /// Ends the run of `process` when it exits: records how, resumes the waiters, releases what
    /// the run held, then applies the restart policy and auto-removal.
    private func watch(_ process: ProcessHandle) async {
        let exited = await process.exited()
        // The log drain ends when the process (and its children) closed stdout and stderr.
        await live.withLock { $0.run(of: process)?.logDrain }?.value
        // The owner of an observed run has recorded its end (the handle waited for it).
        let recorded = observed ? try? Container.loadRecord(directory) : nil
        var status = exited
        let ended = update { live -> Run? in
            guard let run = live.run(of: process) else { return nil }
            status = run.timedOut ? .timedOut : exited
            if case .removing(_, let joiners) = live.phase {
                live.phase = .removing(nil, joiners: joiners)
            } else {
                live.phase = .idle
            }
            live.lastExit = status
            if let recorded {
                live.record = recorded
            } else if !observed {
                live.record.state.status = .exited
                live.record.state.pid = nil
                live.record.supervisor = nil
                live.record.state.exitCode = status.code
                live.record.state.oomKilled = status == .oomKilled
                live.record.state.finishedAt = Date()
            }
            return run
        }
        guard let run = ended else { return }
        run.forwarders.forEach { $0.stop() }
        run.health?.cancel()
        run.deadline?.cancel()
        if status == .oomKilled && !observed { runtime.publish(.oom, self) }
        runtime.publish(.die, self, ["exitCode": "\(status.code)"])
        run.ended.fulfil(status)
        guard !observed else { return }

        let (policy, restarts) = live.withLock { ($0.record.configuration.restartPolicy, $0.record.state.restartCount) }
        if !run.adopted && !run.stopRequested && shouldRestart(policy, status, restarts) {
            update { $0.record.state.restartCount += 1 }
            try? await Task.sleep(for: .milliseconds(100 << min(restarts, 6)))
            if state.status == .exited, (try? await start()) != nil { return }
        }
        if configuration.autoRemove { try? await remove() }
    }

    private func shouldRestart(_ policy: RestartPolicy, _ status: ExitStatus, _ restarts: Int) -> Bool {
        switch policy {
        case .no: false
        case .always, .unlessStopped: true
        case .onFailure(let maximum): !status.isSuccess && (maximum.map { restarts < $0 } ?? true)
        }
    }

    /// Publishes ports of the running container from this process, as
    /// ``ContainerConfiguration/ports`` does at its start: for a container this process does
    /// not own, such as a detached one (``ContainerLifetime/detached``, which cannot have
    /// ports of its own) that another process started.
    ///
    /// Each mapping gets a userland proxy in this process (a `PortForwarder` of `Networking`) that listens while
    /// the container's port does; the container's network sandbox outlives its restarts, so
    /// the proxies go on working across them. They stop with `PortForwarder.stop()` or when
    /// this process ends; they are not in ``ContainerState/publishedPorts``.
    ///
    /// ```swift
    /// let forwarders = try shared.publish([try PortMapping(parsing: "127.0.0.1:0:5432")])
    /// defer { forwarders.forEach { $0.stop() } }
    /// let port = forwarders[0].hostPort
    /// ```
    ///
    /// - Parameter mappings: The host and container ports.
    /// - Returns: The started proxies, in the order of `mappings`.
    /// - Throws: ``ContainerError`` with ``ContainerError/Code/invalidArgument`` when the
    ///   container is on no bridge network or a host port is taken.
    public func publish(_ mappings: [PortMapping]) throws(ContainerError) -> [PortForwarder] {
        try publishPorts(mappings, sandbox: sandbox)
    }

    private func publishPorts(_ mappings: [PortMapping], sandbox: Sandbox?) throws(ContainerError) -> [PortForwarder] {
        guard !mappings.isEmpty else { return [] }
        guard let sandbox, let netnsPath = sandbox.netnsPath, let endpoint = sandbox.endpoints.first else {
            throw ContainerError(code: .invalidArgument, container: name, detail: "publish ports of: a bridge network is needed for")
        }
        var started: [PortForwarder] = []
        for mapping in mappings {
            let forwarder = PortForwarder(mapping, containerAddress: endpoint.ipv4Address, netnsPath: netnsPath)
            do {
                _ = try forwarder.start()
            } catch {
                started.forEach { $0.stop() }
                throw ContainerError(code: .invalidArgument, container: name, detail: "publish \(mapping) for", underlying: error)
            }
            started.append(forwarder)
        }
        return started
    }

    private func stopSignal() throws(ContainerError) -> Signal {
        guard let text = configuration.stopSignal ?? image.config.config?.stopSignal else { return .terminate }
        return try wrapping("parse the stop signal of", container: name) { try Signal(parsing: text) }
    }
}

extension Container {
    /// Creates, starts and returns a container on the shared runtime (`docker run -d`).
    ///
    /// Pulls the image when it is not in the store. Cancelling the calling task while this
    /// runs stops and removes the container.
    ///
    /// - Parameters:
    ///   - image: The image reference.
    ///   - command: Replaces the image's command.
    ///   - configure: Adjusts the rest of the configuration; it may await and throw (what it
    ///     throws is rethrown, and nothing is created).
    /// - Returns: The running container.
    /// - Throws: What `configure` throws, else ``ContainerError``.
    public static func run(
        image: String, command: [String]? = nil, configure: (inout ContainerConfiguration) async throws -> Void = { _ in }
    ) async throws -> Container {
        var configuration = ContainerConfiguration(image: image, command: command)
        try await configure(&configuration)
        return try await ContainerRuntime.shared().run(configuration)
    }

    /// Runs `body` with a running container, then stops and removes it, even when `body`
    /// throws or the task is cancelled.
    ///
    /// - Parameters:
    ///   - image: The image reference.
    ///   - command: Replaces the image's command.
    ///   - configure: Adjusts the rest of the configuration; it may await and throw (what it
    ///     throws is rethrown, and nothing is created).
    ///   - body: What to do with the container.
    /// - Returns: What `body` returns.
    /// - Throws: What `configure` or `body` throws, or ``ContainerError`` from starting the
    ///   container.
    public static func withRunning<T: Sendable>(
        image: String, command: [String]? = nil,
        configure: (inout ContainerConfiguration) async throws -> Void = { _ in },
        _ body: (Container) async throws -> T
    ) async throws -> T {
        var configuration = ContainerConfiguration(image: image, command: command)
        try await configure(&configuration)
        return try await ContainerRuntime.shared().withRunning(configuration, body)
    }
}

extension ContainerRuntime {
    /// Runs `body` with a running container of this runtime, then stops and removes it, even
    /// when `body` throws or the task is cancelled.
    ///
    /// - Parameters:
    ///   - configuration: What the container should be.
    ///   - body: What to do with the container.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` throws, or ``ContainerError`` from starting the container.
    public func withRunning<T: Sendable>(
        _ configuration: ContainerConfiguration, _ body: (Container) async throws -> T
    ) async throws -> T {
        let container = try await run(configuration)
        do {
            let result = try await body(container)
            try await container.remove(force: true)
            return result
        } catch {
            try? await container.remove(force: true)
            throw error
        }
    }
}
