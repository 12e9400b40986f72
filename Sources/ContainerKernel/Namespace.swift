import Glibc

/// A set of Linux namespace kinds, as `clone(2)`'s `CLONE_NEW*` flags.
///
/// ```swift
/// spec.namespaces = [.pid, .mount, .network]
/// ```
public struct Namespaces: OptionSet, Sendable, Hashable {
    /// The `CLONE_NEW*` bits.
    public var rawValue: UInt64

    /// Wraps `CLONE_NEW*` bits.
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Process ids (`CLONE_NEWPID`): the process becomes pid 1 and sees only its descendants.
    public static let pid = Namespaces(rawValue: 0x2000_0000)
    /// The mount table (`CLONE_NEWNS`).
    public static let mount = Namespaces(rawValue: 0x0002_0000)
    /// Host and domain name (`CLONE_NEWUTS`).
    public static let uts = Namespaces(rawValue: 0x0400_0000)
    /// System V IPC and POSIX message queues (`CLONE_NEWIPC`).
    public static let ipc = Namespaces(rawValue: 0x0800_0000)
    /// Network devices, addresses, routes, ports (`CLONE_NEWNET`): only `lo`, down, at first.
    public static let network = Namespaces(rawValue: 0x4000_0000)
    /// The cgroup root the process sees (`CLONE_NEWCGROUP`).
    public static let cgroup = Namespaces(rawValue: 0x0200_0000)
    /// User and group ids and capabilities (`CLONE_NEWUSER`); needs ``ProcessSpec/uidMappings``.
    public static let user = Namespaces(rawValue: 0x1000_0000)

    /// What `docker run` creates: every kind but user.
    public static let container: Namespaces = [.pid, .mount, .uts, .ipc, .network, .cgroup]

    /// The name used under `/proc/<pid>/ns/` for a single kind.
    public var procName: String? {
        switch self {
        case .pid: "pid"
        case .mount: "mnt"
        case .uts: "uts"
        case .ipc: "ipc"
        case .network: "net"
        case .cgroup: "cgroup"
        case .user: "user"
        default: nil
        }
    }

    /// Each single kind in the set, user first (it must be joined before the others).
    var kinds: [Namespaces] {
        [.user, .mount, .pid, .uts, .ipc, .network, .cgroup].filter { contains($0) }
    }
}

/// An existing namespace to join instead of creating one, like `--network container:<id>`.
public struct NamespaceJoin: Sendable, Hashable {
    /// The single kind being joined.
    public var kind: Namespaces
    /// A namespace file: `/proc/<pid>/ns/<name>` or a bind-mounted one such as `/run/netns/x`.
    public var path: String
    /// The process whose namespace `path` names, when it is one: checked through its pidfd to
    /// be still alive once the file is open, so a reused pid cannot lend its namespaces.
    let process: ProcessHandle?

    /// Joins the namespace at `path`.
    ///
    /// - Parameters:
    ///   - kind: One kind (for example ``Namespaces/network``).
    ///   - path: The namespace file.
    public init(_ kind: Namespaces, path: String) {
        self.kind = kind
        self.path = path
        self.process = nil
    }

    /// Joins every namespace of kind `kinds` of a running process, known by its pid only.
    ///
    /// Prefer ``all(_:of:)-(_,ProcessHandle)``: a pid may have been reused by the time the
    /// namespaces are opened.
    ///
    /// - Parameters:
    ///   - kinds: The kinds to join.
    ///   - pid: The process whose namespaces to join, in the caller's pid namespace.
    /// - Returns: One join per kind, user first.
    public static func all(_ kinds: Namespaces, of pid: Int32) -> [NamespaceJoin] {
        kinds.kinds.compactMap { kind in
            kind.procName.map { NamespaceJoin(kind, path: "/proc/\(pid)/ns/\($0)") }
        }
    }

    /// Joins every namespace of kind `kinds` of a process this program holds: the namespace
    /// files are opened by pid and the process is then checked, through its pidfd, to be the
    /// one that had that pid, so a process that exited meanwhile fails the spawn instead of
    /// lending its pid's next owner's namespaces.
    ///
    /// - Parameters:
    ///   - kinds: The kinds to join.
    ///   - process: The process whose namespaces to join.
    /// - Returns: One join per kind, user first.
    public static func all(_ kinds: Namespaces, of process: ProcessHandle) -> [NamespaceJoin] {
        all(kinds, of: process.pid).map { NamespaceJoin(kind: $0.kind, path: $0.path, process: process) }
    }

    private init(kind: Namespaces, path: String, process: ProcessHandle?) {
        self.kind = kind
        self.path = path
        self.process = process
    }

    public static func == (lhs: NamespaceJoin, rhs: NamespaceJoin) -> Bool {
        lhs.kind == rhs.kind && lhs.path == rhs.path && lhs.process === rhs.process
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(kind)
        hasher.combine(path)
    }
}

/// One line of a user namespace's `uid_map` or `gid_map`.
public struct IDMapping: Sendable, Hashable {
    /// The first id inside the namespace.
    public var containerID: UInt32
    /// The id it maps to on the host.
    public var hostID: UInt32
    /// How many consecutive ids are mapped.
    public var size: UInt32

    /// Maps `size` ids starting at `containerID` inside to `hostID` outside.
    public init(containerID: UInt32, hostID: UInt32, size: UInt32) {
        self.containerID = containerID
        self.hostID = hostID
        self.size = size
    }
}
