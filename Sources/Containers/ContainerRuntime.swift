import ContainerKernel
import FoundationEssentials
import Glibc
public import Images
public import Layers
public import Logging
public import Networking
import Synchronization
import SystemSupport

/// Berth's containers on one root directory: the image store, the layer store, and every
/// container created there.
///
/// A runtime is safe to use from many tasks, and several processes may open runtimes on one
/// root. Containers are *embedded* by default: their processes are children of this process
/// and die with it; what a killed owner leaves behind (mounts, cgroups, state) is removed by
/// the next runtime that opens the same root. *Detached* containers
/// (``ContainerLifetime/detached``) are held by a supervisor and outlive this process: every
/// runtime on the root lists and controls them. Running embedded containers of other live
/// processes are listed too and can be inspected, exec'd into and signalled, not changed.
///
/// ```swift
/// let runtime = try ContainerRuntime(root: "/var/lib/berth")
/// let container = try await runtime.run(ContainerConfiguration(image: "busybox", command: ["echo", "hi"]))
/// print(try await container.wait())                 // exited with code 0
/// ```
public final class ContainerRuntime: Sendable {
    /// The root directory (`/var/lib/berth` by default for root; `BERTH_ROOT` overrides it).
    public let root: String
    /// The images, in `<root>/content`.
    public let images: ImageStore
    /// The unpacked layers, in `<root>/layers`.
    public let layers: LayerStore
    /// The networks, in `<root>/networks` and `<root>/netns`.
    public let networks: NetworkManager
    let logger: Logger
    let hub = EventHub()
    private let live = Mutex<[String: Container]>([:])
    /// Running embedded containers of other live processes on the root, seen read-mostly.
    private let observed = Mutex<[String: Container]>([:])

    /// The root used when none is given: `BERTH_ROOT`, else `/var/lib/berth` for root, else
    /// `$XDG_DATA_HOME/berth` (or `~/.local/share/berth`).
    public static var defaultRoot: String {
        if let root = getenv("BERTH_ROOT").map({ String(cString: $0) }), !root.isEmpty { return root }
        if getuid() == 0 { return "/var/lib/berth" }
        if let data = getenv("XDG_DATA_HOME").map({ String(cString: $0) }), !data.isEmpty { return data + "/berth" }
        return (getenv("HOME").map { String(cString: $0) } ?? "/tmp") + "/.local/share/berth"
    }

    private static let sharedRuntime = Mutex<ContainerRuntime?>(nil)

    /// The runtime on ``defaultRoot``, created on first use.
    ///
    /// - Throws: ``ContainerError`` when the root cannot be opened.
    public static func shared() throws(ContainerError) -> ContainerRuntime {
        try sharedRuntime.withLock { runtime throws(ContainerError) in
            if let runtime { return runtime }
            let created = try ContainerRuntime()
            runtime = created
            return created
        }
    }

    /// Opens (creating if needed) a runtime root and removes what dead owners left behind
    /// (``removedAtOpen``).
    ///
    /// - Parameters:
    ///   - root: The root directory.
    ///   - registry: The registry client used for pulls.
    ///   - logger: Where the runtime logs.
    /// - Throws: ``ContainerError`` when the root or its stores cannot be opened.
    public init(root: String = ContainerRuntime.defaultRoot, registry: RegistryClient = RegistryClient(),
                logger: Logger = Logger(label: "berth.containers")) throws(ContainerError) {
        // The stores build their directories from "/": a relative root would land below the
        // host's root, not the working directory.
        let root = root.hasPrefix("/") ? root : FileManager.default.currentDirectoryPath + "/" + root
        self.root = root
        self.logger = logger
        images = try wrapping("open image store in \(root)") { try ImageStore(root: root, registry: registry, logger: logger) }
        layers = try wrapping("open layer store in \(root)") { try LayerStore(root: root + "/layers", logger: logger) }
        networks = try wrapping("open network store in \(root)") { try NetworkManager(root: root) }
        try wrapping("create \(containersDirectory)") { try ContainerError.from(try makeDirectories(containersDirectory, mode: 0o711)) }
        let removed = sweepEndedSessions()
        sweptAtOpen.withLock { $0 = removed }
    }

    private let sweptAtOpen = Mutex<[String]>([])

    /// What the sweep of ended sessions removed when this runtime opened its root, one line
    /// each, as ``pruneSessions()`` says it (opening does all of that sweep but the removal of
    /// expired containers, which needs to wait for them to stop).
    public var removedAtOpen: [String] { sweptAtOpen.withLock { $0 } }

    var containersDirectory: String { root + "/containers" }

    /// Events of every container of this runtime, from now on.
    public func events() -> AsyncStream<ContainerEvent> { hub.subscribe() }

    /// Creates a container: resolves (and if needed pulls) the image, unpacks its layers and
    /// prepares the root filesystem. The container is ``ContainerStatus/created``.
    ///
    /// - Parameter configuration: What the container should be.
    /// - Returns: The container.
    /// - Throws: ``ContainerError``: ``ContainerError/Code/nameInUse``, ``ContainerError/Code/image``
    ///   for a missing or unpullable image, ``ContainerError/Code/layer`` for a root filesystem
    ///   that cannot be prepared, ``ContainerError/Code/invalidArgument`` for a configuration
    ///   ``ContainerConfiguration/validate()`` refuses. Nothing is left behind on failure.
    public func create(_ configuration: ContainerConfiguration) async throws(ContainerError) -> Container {
        try configuration.validate()
        let id = randomHex(64)
        let name = configuration.name ?? generatedName()
        refresh()  // a detached container of another process may have the name
        try validateName(name, of: "container")
        if isNameTaken(name, except: "") { throw ContainerError(code: .nameInUse, container: name, detail: "create") }
        let image = try await resolveImage(configuration)
        let topChainID = try await unpack(image)
        let container = try await Container.create(
            runtime: self, id: id, name: name, configuration: configuration, image: image, topChainID: topChainID)
        let duplicate = live.withLock { containers -> Bool in
            if containers.values.contains(where: { $0.name == name }) { return true }
            containers[id] = container
            return false
        }
        if duplicate {
            try? container.destroyFiles()
            throw ContainerError(code: .nameInUse, container: name, detail: "create")
        }
        publish(.create, container)
        return container
    }

    /// Creates and starts a container (`docker run -d`).
    ///
    /// Cancelling the calling task while this runs stops and removes the container.
    ///
    /// - Parameter configuration: What the container should be.
    /// - Returns: The running container.
    /// - Throws: ``ContainerError`` as ``create(_:)`` and ``Container/start()``.
    public func run(_ configuration: ContainerConfiguration) async throws(ContainerError) -> Container {
        let container = try await create(configuration)
        do {
            try Task.checkCancellation()
            try await container.start()
            try Task.checkCancellation()
        } catch {
            try? await container.remove(force: true)
            if let error = error as? ContainerError { throw error }
            throw ContainerError(code: .cancelled, container: container.name, detail: "run (cancelled, so removed)")
        }
        return container
    }

    /// The container with this id, id prefix or name.
    ///
    /// - Throws: ``ContainerError/Code/notFound``.
    public func container(_ idOrName: String) throws(ContainerError) -> Container {
        refresh()
        let visible = live.withLock { $0 }.merging(observed.withLock { $0 }) { own, _ in own }
        let found = { (containers: [String: Container]) in
            containers[idOrName] ?? containers.values.first { $0.name == idOrName }
                ?? { () -> Container? in
                    let matches = containers.values.filter { $0.id.hasPrefix(idOrName) }
                    return idOrName.count >= 3 && matches.count == 1 ? matches[0] : nil
                }()
        }(visible)
        guard let found else { throw ContainerError(code: .notFound, container: idOrName, detail: "no such container") }
        return found
    }

    /// The containers, newest first, like `docker ps`.
    ///
    /// - Parameters:
    ///   - all: Include containers that are not running (`-a`).
    ///   - labels: Only those with every one of these labels (a `nil` value matches any value).
    ///   - name: Only those whose name contains this text.
    ///   - status: Only those in this state.
    /// - Returns: The matching containers.
    public func list(all: Bool = false, labels: [String: String?] = [:], name: String? = nil,
                     status: ContainerStatus? = nil) -> [Container] {
        refresh()
        return (live.withLock { Array($0.values) } + observed.withLock { Array($0.values) })
            .filter { container in
                let state = container.state
                if !all && state.status != .running && state.status != .paused && status == nil { return false }
                if let status, state.status != status { return false }
                if let name, !container.name.contains(name) { return false }
                let own = container.configuration.labels
                return labels.allSatisfy { key, value in own[key].map { value == nil || $0 == value } ?? false }
            }
            .sorted { $0.created > $1.created }
    }

    /// Removes every container that is not running (`docker container prune`).
    ///
    /// - Returns: The ids of the removed containers.
    public func prune() async -> [String] {
        var removed: [String] = []
        for container in list(all: true) where container.state.status == .exited || container.state.status == .created {
            if (try? await container.remove()) != nil { removed.append(container.id) }
        }
        return removed
    }

    func forget(_ container: Container) {
        _ = live.withLock { $0.removeValue(forKey: container.id) }
    }

    func isNameTaken(_ name: String, except id: String) -> Bool {
        live.withLock { $0.values.contains { $0.name == name && $0.id != id } }
    }

    func publish(_ action: ContainerEvent.Action, _ container: Container, _ attributes: [String: String] = [:]) {
        hub.publish(ContainerEvent(action: action, containerID: container.id, name: container.name,
                                   attributes: attributes, time: Date()))
    }

    private func resolveImage(_ configuration: ContainerConfiguration) async throws(ContainerError) -> Image {
        let name = configuration.image
        if configuration.pullPolicy != .always, let image = try? images.image(name) { return image }
        guard configuration.pullPolicy != .never else {
            throw ContainerError(code: .image, detail: "image \"\(name)\" is not in the store and the pull policy is never")
        }
        return try await wrapping("pull \(name)") {
            try await images.pull(try ImageReference(parsing: name))
        }
    }

    /// Unpacks the image's missing layers and returns the chain's top id.
    private func unpack(_ image: Image) async throws(ContainerError) -> String? {
        try await wrapping("unpack the layers of \(image.id)") { try await images.unpack(image, into: layers) }
    }

    /// Takes over what this runtime does not hold yet, under a lock so that two runtimes
    /// opening one root never both take the same container:
    ///
    /// - a detached container's run, from its supervisor, in whatever state (another process
    ///   may have started it; every runtime on the root holds it);
    /// - a created or exited container whose owner has exited: it holds no process, so it is
    ///   adopted and stays usable, as `berth create` then `berth start` in another invocation
    ///   expects;
    /// - with `removingLeftovers`, an embedded container that was running when its owner died
    ///   is gone with it (its processes died with the owner), and so is any container of an
    ///   ended session (``sessionLabel``), never adopted: its processes, cgroup, mounts,
    ///   network and state are removed.
    ///
    /// Containers another process removed are forgotten.
    ///
    /// - Returns: The ids of the containers removed.
    @discardableResult
    func refresh(removingLeftovers: Bool = false) -> [String] {
        let lock = try? FileLock(containersDirectory + "/.lock")
        defer { lock?.unlock() }
        guard let entries = try? directoryEntries(atPath: containersDirectory).map(\.name) else { return [] }
        let present = Set(entries)
        let held = live.withLock { containers in
            containers = containers.filter { present.contains($0.key) }
            return Set(containers.keys)
        }
        // Read from mountinfo only when a record needs it: create and list refresh every time.
        lazy var hierarchy = try? CgroupHierarchy.detect()
        let cgroup = { (record: ContainerRecord) in
            hierarchy.flatMap { hierarchy in
                try? Cgroup.existing(Container.cgroupPath(record.id), resources: record.configuration.resources, in: hierarchy)
            }
        }
        var seen: [String: Container] = [:]
        var removed: [String] = []
        for id in entries where id != ".lock" && !held.contains(id) {
            let directory = containersDirectory + "/" + id
            guard var record = try? Container.loadRecord(directory) else { continue }
            let ownerAlive = isAlive(record.ownerPID, record.ownerStartTime)
            let supervised = record.supervisor != nil && record.state.pid != nil
            let idle = record.state.status == .created || record.state.status == .exited
            if ownerAlive && !supervised && !idle && record.ownerPID != getpid(), let pid = record.state.pid {
                seen[id] = observe(record, pid: pid, directory: directory, cgroup: cgroup)
                continue
            }
            let sessionEnded = !supervised && !ownerAlive
                && record.configuration.labels[Self.sessionLabel].map { !Self.isSessionAlive($0) } ?? false
            guard supervised || (!ownerAlive && ((idle && !sessionEnded) || removingLeftovers)) else { continue }
            if supervised || (idle && !sessionEnded), let image = try? images.image(record.imageID) {
                if !ownerAlive {
                    record.ownerPID = getpid()
                    record.ownerStartTime = processStartTime(getpid()) ?? 0
                }
                let container = Container(runtime: self, record: record, image: image, directory: directory)
                if (try? container.persist()) != nil {
                    live.withLock { $0[id] = container }
                    if let supervisor = record.supervisor, let pid = record.state.pid {
                        container.hold(ProcessHandle.adopt(
                            pid: pid, supervisorPID: supervisor.pid, supervisorStartTime: supervisor.startTime,
                            statusPath: container.statusPath, cgroup: cgroup(record)))
                    }
                    continue
                }
            }
            logger.debug("removing a container whose owner died while it ran", metadata: ["id": "\(id)"])
            if let hierarchy { try? Cgroup.removeStale(Container.cgroupPath(id), in: hierarchy) }
            try? layers.snapshot(at: directory)?.remove()
            if (try? removeTree(directory)) != nil { removed.append(id) }
        }
        observed.withLock { $0 = seen.compactMapValues { $0 } }
        return removed
    }
}

extension ContainerRuntime {
    /// The observed container for a running embedded container of another live process: the
    /// one already observed while it is the same run, else a new one holding its process.
    fileprivate func observe(
        _ record: ContainerRecord, pid: Int32, directory: String, cgroup: (ContainerRecord) -> Cgroup?
    ) -> Container? {
        if let known = observed.withLock({ $0[record.id] }), known.state.pid == pid { return known }
        guard let image = try? images.image(record.imageID) else { return nil }
        let container = Container(runtime: self, record: record, image: image, directory: directory, observed: true)
        let owner = (record.ownerPID, record.ownerStartTime)
        guard let process = ProcessHandle.observe(pid: pid, parentPID: record.ownerPID, cgroup: cgroup(record), exitStatus: {
            await Self.recordedExit(in: directory, owner: owner)
        }) else { return nil }
        container.hold(process)
        return container
    }

    /// How the owner recorded the end of an observed run: it writes the record shortly after
    /// the exit (once the output has drained), or it died too, and the run with it.
    private static func recordedExit(in directory: String, owner: (Int32, UInt64)) async -> ExitStatus {
        for _ in 0..<250 {
            if let record = try? Container.loadRecord(directory), record.state.status == .exited {
                let code = record.state.exitCode ?? 0
                if record.state.oomKilled { return .oomKilled }
                return code > 128 && code <= 128 + 64 ? .signaled(Signal(rawValue: code - 128), coreDumped: false) : .exited(code)
            }
            guard isAlive(owner.0, owner.1) else { break }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return .signaled(.kill, coreDumped: false)
    }
}

/// Checks Docker's rule for the names of containers and volumes, `[a-zA-Z0-9][a-zA-Z0-9_.-]*`,
/// which also keeps a name a single path component that is never `.`, `..` or hidden.
///
/// - Parameters:
///   - name: The name.
///   - kind: What is named (`"container"`, `"volume"`), for the message.
/// - Throws: ``ContainerError/Code/invalidArgument``.
func validateName(_ name: String, of kind: String) throws(ContainerError) {
    let allowed = name.utf8.allSatisfy { byte in
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a)
            || byte == 0x5f || byte == 0x2e || byte == 0x2d
    }
    guard !name.isEmpty, allowed, name.first != ".", name.first != "-", name.first != "_" else {
        throw ContainerError(code: .invalidArgument, detail: "invalid \(kind) name \"\(name)\": use [a-zA-Z0-9][a-zA-Z0-9_.-]*")
    }
}

/// Whether `pid` is alive and is the same process that started at `startTime`.
func isAlive(_ pid: Int32, _ startTime: UInt64) -> Bool {
    processStartTime(pid) == startTime
}

/// `count` random lowercase hex digits, sixteen from each 64-bit draw (one `getrandom` per
/// draw, not one per digit: a container id takes four).
func randomHex(_ count: Int) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var generator = SystemRandomNumberGenerator()
    var bits: UInt64 = 0
    return String(decoding: (0..<count).map { index -> UInt8 in
        if index % 16 == 0 { bits = generator.next() }
        defer { bits >>= 4 }
        return digits[Int(bits & 0xf)]
    }, as: UTF8.self)
}

private func generatedName() -> String {
    let adjectives = ["brave", "calm", "eager", "fond", "keen", "lucid", "merry", "quiet", "swift", "tidy"]
    let nouns = ["anchor", "bollard", "buoy", "cleat", "dock", "harbor", "jetty", "mooring", "pier", "quay"]
    return "\(adjectives.randomElement() ?? "calm")_\(nouns.randomElement() ?? "pier")_\(randomHex(4))"
}

extension ContainerRuntime {
    /// The sandbox a container's network needs, or `nil` for `none` and `host`, which need no
    /// sandbox: the clone makes the namespace (cheaper than a persistent one) or joins none.
    func networkMode(for configuration: ContainerConfiguration) throws(ContainerError) -> NetworkMode? {
        switch configuration.network {
        case .none, .host:
            return nil
        case .bridge(let names):
            return .bridge(names)
        case .container(let other):
            let target = try container(other)
            if let path = target.sandbox?.netnsPath { return .container(netnsPath: path) }
            guard let pid = target.state.pid else {
                throw ContainerError(code: .invalidState, container: other, detail: "share the network of a container that is not running:")
            }
            return .container(netnsPath: "/proc/\(pid)/ns/net")
        }
    }
}

extension ContainerRuntime {
    /// Removes an image name, refusing while a container of this root uses the image
    /// (`docker rmi`).
    ///
    /// - Parameters:
    ///   - name: The image reference, id or digest.
    ///   - force: Remove even when a container uses it (`-f`).
    /// - Returns: The names removed.
    /// - Throws: ``ContainerError`` with ``ContainerError/Code/image`` (its underlying
    ///   `ImageError` says the image is in use or unknown).
    public func removeImage(_ name: String, force: Bool = false) throws(ContainerError) -> [String] {
        let used = Set(list(all: true).map(\.imageID))
        return try wrapping("remove image \(name)") {
            try images.remove(name, force: force, isInUse: { used.contains($0.description) })
        }
    }
}
