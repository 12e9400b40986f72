public import SystemPackage

/// Everything about a process to spawn in its own namespaces: what runs, as whom, in which
/// root filesystem, with which mounts, limits, capabilities and seccomp filter.
///
/// The defaults are what `docker run` gives: new pid, mount, uts, ipc, network and cgroup
/// namespaces; Docker's 14 capabilities; Docker's default seccomp profile; masked and
/// read-only `/proc` paths; a tmpfs `/dev`; stdout and stderr as pipes.
///
/// ```swift
/// var spec = ProcessSpec(rootfs: "/var/lib/berth/demo-rootfs", arguments: ["/bin/echo", "hi"])
/// spec.hostname = "demo"
/// let process = try await ProcessHandle.spawn(spec)
/// let output = await process.standardOutput?.collect(limit: 1 << 20)
/// ```
public struct ProcessSpec: Sendable {
    /// The program and its arguments; a program name without `/` is searched in the
    /// container's `PATH`.
    public var arguments: [String]
    /// `KEY=value` pairs.
    public var environment: [String]
    /// The working directory inside the container.
    public var workingDirectory: String
    /// The user id inside the container.
    public var userID: UInt32
    /// The group id inside the container.
    public var groupID: UInt32
    /// Supplementary groups.
    public var additionalGroups: [UInt32]
    /// The file mode creation mask, `nil` to keep the default (`0o022`, as Docker).
    public var umask: UInt32?
    /// Limits set with `prlimit` from the parent.
    public var resourceLimits: [ResourceLimit]
    /// Do not let the process gain privileges through `execve`.
    ///
    /// The corresponding C call is `prctl(PR_SET_NO_NEW_PRIVS, 1)`. Off by default, as in
    /// Docker (`--security-opt no-new-privileges` turns it on).
    public var noNewPrivileges: Bool
    /// The capability sets.
    public var capabilities: CapabilitySets
    /// The seccomp filter.
    public var seccomp: SeccompFilter
    /// The OOM killer's bias for the process (`/proc/<pid>/oom_score_adj`); raising is always
    /// allowed, lowering below the host process's needs `CAP_SYS_RESOURCE`.
    ///
    /// Set before the process runs its program. Until its `execve` the process shares this
    /// process's address space, whose processes the kernel gives one score, so this process
    /// has the same score for that moment; its own is written back once the spawn ends.
    public var oomScoreAdjustment: Int32?
    /// Where stdin, stdout and stderr go.
    public var io: ProcessIO
    /// Descriptors passed on as 3, 4, … (socket activation); the caller keeps ownership.
    public var extraFiles: [FileDescriptor]

    /// The hostname (needs a new ``Namespaces/uts``).
    public var hostname: String?
    /// The NIS domain name (needs a new ``Namespaces/uts``).
    public var domainName: String?
    /// Namespaces to create.
    public var namespaces: Namespaces
    /// Existing namespaces to join instead (the kinds must not also be in ``namespaces``).
    public var joinNamespaces: [NamespaceJoin]
    /// The user namespace's uid map (with ``Namespaces/user``).
    public var uidMappings: [IDMapping]
    /// The user namespace's gid map (with ``Namespaces/user``).
    public var gidMappings: [IDMapping]

    /// The root filesystem directory, `nil` to keep the caller's root (then ``mounts``,
    /// ``devices``, ``maskedPaths`` and ``readOnlyPaths`` do not apply).
    ///
    /// A root filesystem needs a new or joined mount namespace (``Namespaces/mount``): a spec
    /// without one is refused, since its mounts would be made on the host.
    public var rootfs: String?
    /// Make the root filesystem read-only (`--read-only`).
    public var readOnlyRootfs: Bool
    /// Propagation of the copied mount tree before anything is mounted: nothing the container
    /// mounts reaches the host, while host mounts still reach the container.
    public var rootPropagation: Mount.Propagation
    /// Mounts, in order.
    ///
    /// Targets are resolved inside the root filesystem. A target reached through a symlink is
    /// refused when either end lies below `/proc`, `/sys` or `/dev` (an image whose `/dev`
    /// links into a volume), and so is a bind mount on `/proc`, `/sys` or `/dev` themselves or
    /// anywhere below `/proc`: the kernel's file systems are the runtime's, as in runc.
    public var mounts: [Mount]
    /// Device nodes created in `/dev` after the mounts.
    public var devices: [Device]
    /// Whether `/dev/fd`, `/dev/stdin`, `/dev/stdout`, `/dev/stderr` and `/dev/ptmx` are created.
    public var deviceSymlinks: Bool
    /// Paths hidden from the process; `nil` means Docker's defaults (``Mount/dockerMaskedPaths``).
    ///
    /// Files are covered by a bind of the host's `/dev/null`, opened before `pivot_root` and
    /// checked to be the null device, never by whatever the container's `/dev` holds.
    public var maskedPaths: [String]?
    /// Paths made read-only; `nil` means Docker's defaults (``Mount/dockerReadOnlyPaths``).
    public var readOnlyPaths: [String]?
    /// Sysctls written in the container, such as `["net.ipv4.ip_unprivileged_port_start": "0"]`.
    public var sysctls: [String: String]

    /// The cgroup to create for the process, `nil` for none (it stays in the caller's).
    public var cgroup: CgroupPlacement?
    /// An existing cgroup to join instead, such as a running container's for an exec.
    public var joinCgroup: Cgroup?
    /// The signal the process gets when the thread that spawned it dies (`PR_SET_PDEATHSIG`).
    /// Berth spawns from one long-lived thread, so this means "when the host process dies".
    public var parentDeathSignal: Signal?
    /// Hold the process by a supervisor instead of by this program, so that it outlives it
    /// (a *detached* process); `nil` keeps it a child of this program.
    public var supervision: Supervision?
    /// How long the init sequence, from the parent's go-ahead to `execve`, may take before the
    /// child is killed and the spawn fails with ``KernelError/Code/timedOut`` (30 seconds by
    /// default; `nil` for no deadline). It bounds a child stuck on a hung bind source or a
    /// blocking device; a later spawn is not held up by it.
    public var initTimeout: Duration?

    /// The `PATH` used when the environment has none.
    public static let defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    /// A spec with Docker's defaults.
    ///
    /// - Parameters:
    ///   - rootfs: The root filesystem directory, or `nil` to stay in the caller's root.
    ///   - arguments: The program and its arguments.
    public init(rootfs: String?, arguments: [String]) {
        self.arguments = arguments
        self.environment = ["PATH=\(Self.defaultPath)"]
        self.workingDirectory = "/"
        self.userID = 0
        self.groupID = 0
        self.additionalGroups = []
        self.umask = nil
        self.resourceLimits = []
        self.noNewPrivileges = false
        self.capabilities = .dockerDefault
        self.seccomp = .dockerDefault
        self.oomScoreAdjustment = nil
        self.io = ProcessIO()
        self.extraFiles = []
        self.hostname = nil
        self.domainName = nil
        self.namespaces = rootfs == nil ? [.pid, .uts, .ipc, .network, .cgroup] : .container
        self.joinNamespaces = []
        self.uidMappings = []
        self.gidMappings = []
        self.rootfs = rootfs
        self.readOnlyRootfs = false
        self.rootPropagation = .recursiveSlave
        self.mounts = Mount.containerDefaults
        self.devices = Device.containerDefaults
        self.deviceSymlinks = true
        self.maskedPaths = nil
        self.readOnlyPaths = nil
        self.sysctls = [:]
        self.cgroup = nil
        self.joinCgroup = nil
        self.parentDeathSignal = .kill
        self.supervision = nil
        self.initTimeout = .seconds(30)
    }
}

/// The cgroup a spawned process is placed in: created before the process runs, removed
/// after it exits.
public struct CgroupPlacement: Sendable {
    /// The path below the hierarchy root, such as `berth/3f2a…`.
    public var path: String
    /// The limits.
    public var resources: CgroupResources
    /// Where cgroups live; `nil` detects the machine's hierarchy.
    public var hierarchy: CgroupHierarchy?

    /// Places the process in a new cgroup.
    ///
    /// - Parameters:
    ///   - path: The path below the hierarchy root.
    ///   - resources: The limits.
    ///   - hierarchy: Where cgroups live; `nil` detects it.
    public init(path: String, resources: CgroupResources = CgroupResources(), hierarchy: CgroupHierarchy? = nil) {
        self.path = path
        self.resources = resources
        self.hierarchy = hierarchy
    }
}

/// Which seccomp filter a process runs under.
public enum SeccompFilter: Sendable {
    /// No filter (`--security-opt seccomp=unconfined`).
    case unconfined
    /// Docker's default profile, resolved for the process's capabilities.
    case dockerDefault
    /// A profile (OCI JSON or Docker's format), compiled at spawn time and cached.
    case profile(SeccompProfile)
    /// An already compiled program.
    case program(SeccompProgram)
}
