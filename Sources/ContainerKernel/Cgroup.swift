import Glibc
import Synchronization
import SystemPackage
import SystemSupport

/// The two cgroup interfaces of the Linux kernel.
public enum CgroupVersion: Sendable, Hashable {
    /// One hierarchy per controller (or group of co-mounted controllers).
    case v1
    /// The unified hierarchy (`cgroup2`).
    case v2
}

/// Where cgroups live on this machine.
///
/// Detect it once at start with ``detect()``; tests and unusual setups can name a `cgroup2` mount
/// point with ``unified(at:)``.
///
/// On a hybrid machine (cgroup v1 controllers beside a `cgroup2` mount, usually at
/// `/sys/fs/cgroup/unified`, with few or no controllers) ``detect()`` chooses v1 and leaves the
/// unified mount alone, unlike crun, which refuses such a layout.
public struct CgroupHierarchy: Sendable, Hashable {
    /// One mounted cgroup v1 hierarchy and the controllers of it that Berth manages.
    struct LegacyMount: Sendable, Hashable {
        var mountPoint: String
        var controllers: Set<CgroupController>
    }

    enum Layout: Sendable, Hashable {
        case unified(mountPoint: String)
        /// Sorted by mount point; each controller appears in at most one mount.
        case legacy([LegacyMount])
    }

    let layout: Layout

    /// The cgroup interface this hierarchy speaks.
    public var version: CgroupVersion {
        switch layout {
        case .unified: .v2
        case .legacy: .v1
        }
    }

    /// Finds this machine's cgroup hierarchy.
    ///
    /// A `cgroup2` file system at `/sys/fs/cgroup` means pure cgroup v2. Otherwise the cgroup v1
    /// controllers Berth uses (cpu, cpuacct, cpuset, memory, devices, freezer, blkio, pids) are
    /// found by the super options of the `cgroup` mounts, so co-mounted hierarchies such as
    /// `cpu,cpuacct` and unusual mount points both work. Only when there is none does a
    /// `cgroup2` mount elsewhere serve.
    ///
    /// Everything comes from one read of `/proc/self/mountinfo`: the file system type it gives
    /// for `/sys/fs/cgroup` is what `statfs` would report as `CGROUP2_SUPER_MAGIC` (runc's
    /// test), and the v1 controllers need the file anyway.
    ///
    /// - Returns: The hierarchy.
    /// - Throws: ``KernelError`` with code ``KernelError/Code/unsupported`` when neither kind of
    ///   cgroup file system is mounted, or ``KernelError/Code/syscallFailed`` when
    ///   `/proc/self/mountinfo` cannot be read.
    public static func detect() throws(KernelError) -> CgroupHierarchy {
        let mounts = parseMountInfo(try CgroupFile.read("/proc/self/mountinfo"))
        // The last mount on a mount point is the one visible there.
        if mounts.last(where: { $0.mountPoint == "/sys/fs/cgroup" })?.fileSystemType == "cgroup2" {
            return .unified(at: "/sys/fs/cgroup")
        }
        if let hierarchy = legacy(from: mounts) { return hierarchy }
        if let unified = mounts.first(where: { $0.fileSystemType == "cgroup2" }) {
            return .unified(at: unified.mountPoint)
        }
        throw KernelError(
            code: .unsupported,
            detail: "find cgroups: no cgroup2 or cgroup v1 controller mount in /proc/self/mountinfo")
    }

    /// A cgroup v2 hierarchy mounted at `mountPoint`.
    ///
    /// - Parameter mountPoint: Where a `cgroup2` file system is mounted, such as `/sys/fs/cgroup`.
    /// - Returns: The hierarchy; nothing is checked until a cgroup is created in it.
    public static func unified(at mountPoint: String) -> CgroupHierarchy {
        CgroupHierarchy(layout: .unified(mountPoint: mountPoint))
    }

    /// The cgroup v1 layout described by the `cgroup` mounts, or `nil` when no mount carries a
    /// controller Berth manages.
    static func legacy(from mounts: [MountInfoEntry]) -> CgroupHierarchy? {
        var claimed: Set<CgroupController> = []
        var result: [LegacyMount] = []
        for mount in mounts where mount.fileSystemType == "cgroup" {
            // A hierarchy mounted twice (a bind mount, a container's view) keeps its first mount
            // point, as runc's mountinfo scan does.
            let controllers = Set(mount.superOptions.compactMap(CgroupController.init(rawValue:)))
                .intersection(CgroupController.legacy)
                .subtracting(claimed)
            guard !controllers.isEmpty else { continue }
            claimed.formUnion(controllers)
            result.append(LegacyMount(mountPoint: mount.mountPoint, controllers: controllers))
        }
        guard !result.isEmpty else { return nil }
        return CgroupHierarchy(layout: .legacy(result.sorted { $0.mountPoint < $1.mountPoint }))
    }

    /// The directories where a cgroup at `path` lives: one for v2, one per hierarchy for v1.
    var roots: [String] {
        switch layout {
        case .unified(let mountPoint): [mountPoint]
        case .legacy(let mounts): mounts.map(\.mountPoint)
        }
    }
}

/// A cgroup controller, by the name the kernel uses in `cgroup.controllers` and mount options.
enum CgroupController: String, Sendable, Hashable, Comparable {
    case cpu, cpuacct, cpuset, memory, devices, freezer, blkio, pids, io

    /// The cgroup v1 controllers Berth creates directories in. Others (net_cls, perf_event,
    /// hugetlb, rdma, misc, name=systemd) are left alone: no limit Berth offers uses them.
    static var legacy: Set<CgroupController> { [.cpu, .cpuacct, .cpuset, .memory, .devices, .freezer, .blkio, .pids] }

    /// The cgroup v2 controllers Berth enables for its cgroups when the parent offers them, so
    /// that limits can be added later by ``Cgroup/update(_:)`` and ``Cgroup/stats()`` sees usage.
    static var unified: Set<CgroupController> { [.cpu, .cpuset, .memory, .pids, .io] }

    static func < (lhs: CgroupController, rhs: CgroupController) -> Bool { lhs.rawValue < rhs.rawValue }
}

extension Set<CgroupController> {
    /// The names, sorted and comma-separated, for error messages.
    var names: String { sorted().map(\.rawValue).joined(separator: ", ") }
}

/// One line of `/proc/self/mountinfo` (`proc(5)`), reduced to what cgroup detection needs.
struct MountInfoEntry: Sendable, Hashable {
    var mountPoint: String
    var fileSystemType: String
    var superOptions: [String]
}

/// Parses `/proc/self/mountinfo`: `id parent major:minor root mountpoint options [optional…] -
/// fstype source superoptions`. Malformed lines are skipped.
func parseMountInfo(_ text: String) -> [MountInfoEntry] {
    text.split(separator: "\n").compactMap { line in
        let fields = line.split(separator: " ", omittingEmptySubsequences: false)
        guard fields.count >= 10, let separator = fields[6...].firstIndex(of: "-"),
            separator + 3 < fields.count
        else { return nil }
        return MountInfoEntry(
            mountPoint: unescapeMountInfo(fields[4]),
            fileSystemType: String(fields[separator + 1]),
            superOptions: fields[separator + 3].split(separator: ",").map(String.init)
        )
    }
}

/// Undoes the kernel's octal escapes for space, tab, newline and backslash (`\040`).
private func unescapeMountInfo(_ field: Substring) -> String {
    guard field.contains("\\") else { return String(field) }
    var bytes: [UInt8] = []
    var utf8 = Array(field.utf8)[...]
    while let byte = utf8.popFirst() {
        if byte == UInt8(ascii: "\\"), utf8.count >= 3,
            let value = UInt8(String(decoding: utf8.prefix(3), as: UTF8.self), radix: 8)
        {
            bytes.append(value)
            utf8 = utf8.dropFirst(3)
        } else {
            bytes.append(byte)
        }
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Resource limits for a cgroup, in Docker's terms and units.
///
/// `nil` leaves a limit as the kernel sets it for a new cgroup (unlimited) and, in
/// ``Cgroup/update(_:)``, as it currently is.
///
/// ```swift
/// var limits = CgroupResources(memoryLimit: 512 << 20, pidsLimit: 256)
/// limits.cpus = 1.5                                    // docker run --cpus 1.5
/// let cgroup = try Cgroup.create("berth/\(id)", resources: limits, in: hierarchy)
/// ```
public struct CgroupResources: Sendable, Hashable, Codable {
    /// The memory limit in bytes (`--memory`), or -1 for unlimited.
    ///
    /// cgroup v1 `memory.limit_in_bytes`; v2 `memory.max`.
    public var memoryLimit: Int64?
    /// The limit on memory plus swap in bytes (`--memory-swap`), or -1 for unlimited swap.
    ///
    /// Needs ``memoryLimit`` and must be at least as large. cgroup v1
    /// `memory.memsw.limit_in_bytes`; v2 `memory.swap.max`, which counts swap alone and so gets
    /// the difference (runc's `ConvertMemorySwapToCgroupV2Value`).
    public var memorySwapLimit: Int64?
    /// The relative CPU weight (`--cpu-shares`), 2 to 262144; Docker's default is 1024.
    ///
    /// cgroup v1 `cpu.shares`; v2 `cpu.weight`, converted with the OCI formula
    /// `1 + ((shares - 2) * 9999) / 262142`.
    public var cpuShares: UInt64?
    /// The CPU time the cgroup may use per ``cpuPeriod``, in microseconds (`--cpu-quota`), at
    /// least 1000, or -1 for unlimited.
    ///
    /// cgroup v1 `cpu.cfs_quota_us`; v2 the first field of `cpu.max`.
    public var cpuQuota: Int64?
    /// The length of a CPU accounting period in microseconds (`--cpu-period`), 1000 to
    /// 1000000; the kernel's default is 100000.
    ///
    /// cgroup v1 `cpu.cfs_period_us`; v2 the second field of `cpu.max`.
    public var cpuPeriod: UInt64?
    /// The CPUs the processes may run on (`--cpuset-cpus`), such as `0-2,4`.
    public var cpusetCpus: String?
    /// The memory nodes the processes may allocate from (`--cpuset-mems`), such as `0`.
    public var cpusetMems: String?
    /// The maximum number of processes and threads (`--pids-limit`); zero or negative means
    /// unlimited, as in Docker.
    public var pidsLimit: Int64?
    /// The devices the processes may create, read and write; everything else is denied.
    ///
    /// The default is ``DeviceRule/dockerDefaults``, which refuses `mknod` of block devices.
    public var devices: [DeviceRule]
    /// The relative block I/O weight (`--blkio-weight`), 10 to 1000.
    ///
    /// cgroup v1 `blkio.weight`, or `blkio.bfq.weight` where only the BFQ scheduler offers a
    /// weight; v2 `io.weight`, converted as runc does (`1 + (weight - 10) * 9999 / 990`), or
    /// `io.bfq.weight` (the weight as it is) where that is the file there is. A weight only
    /// matters under contention, and only on devices whose scheduler honours it.
    public var blockIOWeight: UInt16?
    /// Rate limits on block devices, device by device (`--device-read-bps` and its siblings).
    ///
    /// In ``Cgroup/update(_:)`` each entry changes the rates it sets on its device and leaves
    /// the device's other rates and the other devices as they are. A device must be a whole
    /// disk (the kernel throttles no partitions).
    public var blockIOThrottles: [BlockIOThrottle]?

    /// Creates resource limits.
    ///
    /// - Parameters:
    ///   - memoryLimit: The memory limit in bytes, or -1 for unlimited.
    ///   - memorySwapLimit: The memory plus swap limit in bytes, or -1 for unlimited swap.
    ///   - cpuShares: The relative CPU weight, 2 to 262144.
    ///   - cpuQuota: CPU time per period in microseconds, or -1 for unlimited.
    ///   - cpuPeriod: The accounting period in microseconds.
    ///   - cpusetCpus: The CPUs to run on, in the kernel's list format.
    ///   - cpusetMems: The memory nodes to allocate from, in the kernel's list format.
    ///   - pidsLimit: The maximum number of tasks; zero or negative for unlimited.
    ///   - devices: The device allowlist.
    ///   - blockIOWeight: The relative block I/O weight, 10 to 1000.
    ///   - blockIOThrottles: Rate limits on block devices.
    public init(
        memoryLimit: Int64? = nil, memorySwapLimit: Int64? = nil, cpuShares: UInt64? = nil,
        cpuQuota: Int64? = nil, cpuPeriod: UInt64? = nil, cpusetCpus: String? = nil,
        cpusetMems: String? = nil, pidsLimit: Int64? = nil, devices: [DeviceRule] = DeviceRule.dockerDefaults,
        blockIOWeight: UInt16? = nil, blockIOThrottles: [BlockIOThrottle]? = nil
    ) {
        self.memoryLimit = memoryLimit
        self.memorySwapLimit = memorySwapLimit
        self.cpuShares = cpuShares
        self.cpuQuota = cpuQuota
        self.cpuPeriod = cpuPeriod
        self.cpusetCpus = cpusetCpus
        self.cpusetMems = cpusetMems
        self.pidsLimit = pidsLimit
        self.devices = devices
        self.blockIOWeight = blockIOWeight
        self.blockIOThrottles = blockIOThrottles
    }

    /// The number of CPUs' worth of time the processes may use (`--cpus`), or `nil` when
    /// ``cpuQuota`` is unset or unlimited.
    ///
    /// Setting it sets ``cpuPeriod`` to 100000 µs and ``cpuQuota`` to that many CPUs' share of
    /// it, as Docker does: `cpus = 0.5` gives a quota of 50000. Setting `nil` clears both.
    public var cpus: Double? {
        get {
            guard let cpuQuota, cpuQuota > 0 else { return nil }
            return Double(cpuQuota) / Double(cpuPeriod ?? Self.defaultCPUPeriod)
        }
        set {
            guard let newValue else {
                cpuQuota = nil
                cpuPeriod = nil
                return
            }
            cpuPeriod = Self.defaultCPUPeriod
            cpuQuota = Int64((newValue * Double(Self.defaultCPUPeriod)).rounded())
        }
    }

    /// The kernel's default CFS period, 100 ms (`sched/fair.c`, `default_cfs_period`).
    static let defaultCPUPeriod: UInt64 = 100_000

    /// `self` with every non-`nil` field of `update`, and its device rules.
    func merging(_ update: CgroupResources) -> CgroupResources {
        CgroupResources(
            memoryLimit: update.memoryLimit ?? memoryLimit,
            memorySwapLimit: update.memorySwapLimit ?? memorySwapLimit,
            cpuShares: update.cpuShares ?? cpuShares,
            cpuQuota: update.cpuQuota ?? cpuQuota,
            cpuPeriod: update.cpuPeriod ?? cpuPeriod,
            cpusetCpus: update.cpusetCpus ?? cpusetCpus,
            cpusetMems: update.cpusetMems ?? cpusetMems,
            pidsLimit: update.pidsLimit ?? pidsLimit,
            devices: update.devices,
            blockIOWeight: update.blockIOWeight ?? blockIOWeight,
            blockIOThrottles: update.blockIOThrottles.map { (blockIOThrottles ?? []).merging($0) } ?? blockIOThrottles
        )
    }

    /// Rejects values the kernel would refuse or misread, before anything is written, with
    /// Docker's bounds (`daemon/daemon_unix.go`, `verifyPlatformContainerResources`).
    func validate() throws(KernelError) {
        func invalid(_ message: String) -> KernelError {
            KernelError(code: .invalidArgument, detail: "cgroup resources: \(message)")
        }
        if let memoryLimit, memoryLimit <= 0 && memoryLimit != -1 {
            throw invalid("memory limit \(memoryLimit) must be positive or -1")
        }
        if let memorySwapLimit {
            guard memorySwapLimit > 0 || memorySwapLimit == -1 else {
                throw invalid("memory+swap limit \(memorySwapLimit) must be positive or -1")
            }
            guard let memoryLimit, memoryLimit > 0 else {
                throw invalid("a memory+swap limit needs a memory limit")
            }
            if memorySwapLimit != -1 && memorySwapLimit < memoryLimit {
                throw invalid("memory+swap limit \(memorySwapLimit) is below the memory limit \(memoryLimit)")
            }
        }
        if let cpuShares, !(2...262_144).contains(cpuShares) {
            throw invalid("cpu shares \(cpuShares) outside 2...262144")
        }
        if let cpuQuota, cpuQuota < 1000 && cpuQuota != -1 {
            throw invalid("cpu quota \(cpuQuota) must be at least 1000 µs or -1")
        }
        if let cpuPeriod, !(1000...1_000_000).contains(cpuPeriod) {
            throw invalid("cpu period \(cpuPeriod) outside 1000...1000000 µs")
        }
        for rule in devices { try rule.validate() }
        if let blockIOWeight, !(10...1000).contains(blockIOWeight) {
            throw invalid("block I/O weight \(blockIOWeight) outside 10...1000")
        }
    }

    /// The controllers a cgroup of `version` needs to enforce these limits (devices aside:
    /// cgroup v1 needs the devices controller, v2 an eBPF program, whatever the rules).
    func requiredControllers(_ version: CgroupVersion) -> Set<CgroupController> {
        var result: Set<CgroupController> = []
        if blockIOWeight != nil || blockIOThrottles != nil { result.insert(version == .v1 ? .blkio : .io) }
        if memoryLimit != nil || memorySwapLimit != nil { result.insert(.memory) }
        if cpuShares != nil || cpuQuota != nil || cpuPeriod != nil { result.insert(.cpu) }
        if cpusetCpus != nil || cpusetMems != nil { result.insert(.cpuset) }
        if pidsLimit != nil { result.insert(.pids) }
        return result
    }
}

/// A snapshot of a cgroup's usage and limits, as `docker stats` shows them.
///
/// A field is `nil` when the controller it comes from is not available to the cgroup.
public struct CgroupStats: Sendable, Hashable, Codable {
    /// Memory in use in bytes, page cache included (v1 `memory.usage_in_bytes`; v2
    /// `memory.current`).
    public var memoryUsage: UInt64?
    /// The most memory ever in use in bytes (v1 `memory.max_usage_in_bytes`; v2 `memory.peak`,
    /// Linux 5.19).
    public var memoryPeak: UInt64?
    /// The memory limit in bytes, or `nil` when unlimited.
    public var memoryLimit: UInt64?
    /// How many processes the out-of-memory killer has killed (the `oom_kill` line of v1
    /// `memory.oom_control` or v2 `memory.events`).
    public var oomKills: UInt64?
    /// CPU time used, in nanoseconds (v1 `cpuacct.usage`; v2 `usage_usec` of `cpu.stat`).
    public var cpuUsageNanoseconds: UInt64?
    /// The configured CPU quota in microseconds per ``cpuPeriod``, or `nil` when unlimited.
    public var cpuQuota: Int64?
    /// The configured CPU accounting period in microseconds.
    public var cpuPeriod: UInt64?
    /// The number of processes and threads.
    public var pidsCurrent: UInt64?
    /// The process limit, or `nil` when unlimited.
    public var pidsLimit: UInt64?
    /// Bytes read from block devices (v1 `blkio.throttle.io_service_bytes`; v2 `rbytes` of
    /// `io.stat`).
    public var blockReadBytes: UInt64?
    /// Bytes written to block devices (v1 `blkio.throttle.io_service_bytes`; v2 `wbytes` of
    /// `io.stat`).
    public var blockWriteBytes: UInt64?

    /// Creates an empty snapshot.
    public init() {}
}

/// One cgroup that Berth created: a directory in the v2 hierarchy, or one in each v1 hierarchy.
///
/// The life of a container's cgroup:
///
/// ```swift
/// let cgroup = try Cgroup.create("berth/\(id)", resources: limits, in: hierarchy)
/// // spawn with clone3(CLONE_INTO_CGROUP, cgroup.directoryDescriptor) on v2,
/// // or `try cgroup.attach(pid:)` before the child continues on v1
/// …
/// try cgroup.killAll()
/// // reap the processes
/// try cgroup.destroy()
/// ```
///
/// The methods are safe to call from several threads; they block on small reads and writes of
/// cgroup files, which do not wait for I/O.
public final class Cgroup: Sendable {
    struct State {
        /// The limits in force, as last written.
        var resources: CgroupResources
        var destroyed = false
    }

    /// The cgroup's path below the hierarchy's root, such as `berth/3f2a…`.
    public let path: String
    /// The interface of the hierarchy the cgroup is in, chosen once when it is created or opened.
    let backend: any CgroupBackend
    let state: Mutex<State>

    init(path: String, backend: any CgroupBackend, resources: CgroupResources) {
        self.path = path
        self.backend = backend
        self.state = Mutex(State(resources: resources))
    }

    /// Creates a cgroup and sets its limits, before any process is in it.
    ///
    /// Missing parent directories (such as `berth`) are created and kept: other cgroups share
    /// them. On v2 the controllers Berth uses (cpu, cpuset, memory, pids, io) are enabled in each
    /// ancestor's `cgroup.subtree_control`, as far as the ancestor offers them in
    /// `cgroup.controllers`. On v1 a new cpuset directory gets its parent's `cpuset.cpus` and
    /// `cpuset.mems`, without which the kernel refuses to admit any task. If anything fails, the
    /// new cgroup is removed again.
    ///
    /// - Parameters:
    ///   - path: A relative path below the hierarchy root, such as `berth/<id>`, without `.` or
    ///     `..` components.
    ///   - resources: The limits.
    ///   - hierarchy: Where to create it.
    /// - Returns: The cgroup.
    /// - Throws: ``KernelError`` with code ``KernelError/Code/invalidArgument`` for a bad path or
    ///   limit, ``KernelError/Code/invalidState`` when the cgroup already exists,
    ///   ``KernelError/Code/unsupported`` naming a controller a requested limit needs but the
    ///   hierarchy does not offer, and ``KernelError/Code/syscallFailed`` naming the file the
    ///   kernel refused.
    public static func create(
        _ path: String, resources: CgroupResources, in hierarchy: CgroupHierarchy
    ) throws(KernelError) -> Cgroup {
        try validate(path: path)
        try resources.validate()
        let backend: any CgroupBackend =
            switch hierarchy.layout {
            case .legacy(let mounts): try V1.create(path, mounts: mounts, resources: resources)
            case .unified(let mountPoint): try V2.create(path, mountPoint: mountPoint, resources: resources)
            }
        return Cgroup(path: path, backend: backend, resources: resources)
    }

    /// Opens an existing cgroup, such as a detached container's that another program created.
    ///
    /// - Parameters:
    ///   - path: A relative path below the hierarchy root, such as `berth/<id>`.
    ///   - resources: The limits it was created with, as ``resources`` reports them.
    ///   - hierarchy: Where it is.
    /// - Returns: The cgroup.
    /// - Throws: ``KernelError`` with ``KernelError/Code/invalidState`` when it does not exist.
    package static func existing(
        _ path: String, resources: CgroupResources, in hierarchy: CgroupHierarchy
    ) throws(KernelError) -> Cgroup {
        try validate(path: path)
        let backend: any CgroupBackend =
            switch hierarchy.layout {
            case .legacy(let mounts): try V1.existing(path, mounts: mounts)
            case .unified(let mountPoint): try V2.existing(mountPoint + "/" + path)
            }
        return Cgroup(path: path, backend: backend, resources: resources)
    }

    /// The cgroup interface this cgroup uses.
    public var version: CgroupVersion { backend.version }

    /// The limits in force: those given to ``create(_:resources:in:)`` with every
    /// ``update(_:)`` applied.
    public var resources: CgroupResources { state.withLock { $0.resources } }

    /// The cgroup v2 directory, open with `O_PATH | O_DIRECTORY`, for
    /// `clone3(CLONE_INTO_CGROUP)`; `nil` on cgroup v1 and after ``destroy()``.
    ///
    /// The cgroup owns the descriptor: do not close it.
    public var directoryDescriptor: Int32? { backend.directoryDescriptor }

    /// Moves a process (all its threads) into the cgroup.
    ///
    /// On v1 the process joins the cgroup's directory in every hierarchy.
    ///
    /// - Parameter pid: The process.
    /// - Throws: ``KernelError`` naming the `cgroup.procs` file the kernel refused the pid in,
    ///   or with code ``KernelError/Code/invalidState`` after ``destroy()``.
    public func attach(pid: Int32) throws(KernelError) {
        guard pid > 0 else {
            throw KernelError(code: .invalidArgument, detail: "attach pid \(pid) to cgroup \(path): not a process id")
        }
        try checkAlive("attach pid \(pid)")
        try backend.attach(pid: pid)
    }

    /// Changes limits while processes run, like `docker update`.
    ///
    /// Limits that are `nil` in `resources` stay as they are. The device rules are replaced
    /// when they differ from the current ones, so start from ``resources`` to keep them:
    ///
    /// ```swift
    /// var limits = cgroup.resources
    /// limits.memoryLimit = 1 << 30
    /// try cgroup.update(limits)
    /// ```
    ///
    /// - Parameter resources: The new limits.
    /// - Throws: ``KernelError`` as ``create(_:resources:in:)`` does; a failure can leave some
    ///   limits changed and others not.
    public func update(_ resources: CgroupResources) throws(KernelError) {
        try state.withLock { (state) throws(KernelError) in
            guard !state.destroyed else {
                throw KernelError(code: .invalidState, detail: "update cgroup \(path): already destroyed")
            }
            let merged = state.resources.merging(resources)
            try merged.validate()
            try backend.apply(resources, merged: merged, previous: state.resources)
            state.resources = merged
        }
    }

    /// Freezes every process in the cgroup and waits until all are frozen.
    ///
    /// v1 writes `FROZEN` to `freezer.state` until it reads back `FROZEN`; v2 writes 1 to
    /// `cgroup.freeze` and waits for `frozen 1` in `cgroup.events`. Either polls with
    /// `Task.sleep`, starting at 1 ms, for up to 5 seconds. If the task is cancelled or the time
    /// runs out, the cgroup is thawed again so it is not left half-frozen.
    ///
    /// - Throws: ``KernelError`` with code ``KernelError/Code/unsupported`` without a freezer,
    ///   ``KernelError/Code/invalidState`` on timeout, cancellation or after ``destroy()``,
    ///   ``KernelError/Code/syscallFailed`` naming a file the kernel refused.
    public func freeze() async throws(KernelError) {
        try checkAlive("freeze")
        do {
            try await poll("freeze") { () throws(KernelError) in try backend.freeze() }
        } catch {
            try? backend.thaw()
            throw error
        }
    }

    /// Thaws the processes of a frozen cgroup and waits until the kernel reports it thawed.
    ///
    /// - Throws: ``KernelError`` as ``freeze()`` does.
    public func thaw() async throws(KernelError) {
        try checkAlive("thaw")
        try await poll("thaw") { () throws(KernelError) in
            try backend.thaw()
            return try !isFrozen
        }
    }

    /// Whether the cgroup is frozen (v1 `freezer.state` reads `FROZEN`; v2 `cgroup.events` says
    /// `frozen 1`). A cgroup still freezing is not frozen.
    ///
    /// - Throws: ``KernelError`` when the state cannot be read.
    public var isFrozen: Bool {
        get throws(KernelError) { try backend.isFrozen }
    }

    /// Reads the cgroup's usage and limits.
    ///
    /// - Returns: The snapshot; fields of controllers the cgroup lacks are `nil`.
    /// - Throws: ``KernelError`` naming a file that exists but cannot be read or parsed.
    public func stats() throws(KernelError) -> CgroupStats {
        try checkAlive("read stats")
        return try backend.stats()
    }

    /// Sends `SIGKILL` to every process in the cgroup.
    ///
    /// v2 writes 1 to `cgroup.kill` (Linux 5.14), which the kernel applies atomically, forks
    /// included. Otherwise (v1, older v2) `cgroup.procs` is read and each process killed, round
    /// after round until no new process appears, so processes forked meanwhile are caught too;
    /// the `kill` by pid can in principle hit a recycled pid, as runc's `signalAllProcesses`
    /// can. On v1 a frozen cgroup is thawed afterwards so that its processes can die.
    ///
    /// The processes are dying, not necessarily gone, when this returns: reap the ones that are
    /// your children, then call ``destroy()``.
    ///
    /// - Throws: ``KernelError`` naming the file or `kill` call that failed.
    public func killAll() throws(KernelError) {
        try checkAlive("kill processes")
        try backend.killAll()
    }

    /// The processes in the cgroup, for `docker top`.
    ///
    /// - Returns: Their pids, in the kernel's order.
    /// - Throws: ``KernelError`` naming the `cgroup.procs` file that could not be read.
    public func processes() throws(KernelError) -> [Int32] {
        try checkAlive("list processes")
        let file = backend.processesFile
        return try CgroupFile.parsePids(CgroupFile.read(file), file: file)
    }

    /// Removes the cgroup's directories, once its processes are gone.
    ///
    /// `rmdir` of a cgroup fails with `EBUSY` while a task in it is still exiting, so it is
    /// retried with a growing pause for up to about half a second; this can block the calling
    /// thread that long. Calling it again after it succeeded does nothing.
    ///
    /// - Throws: ``KernelError`` naming the directory that could not be removed (`EBUSY` when
    ///   processes remain: call ``killAll()`` and reap them first).
    public func destroy() throws(KernelError) {
        try state.withLock { (state) throws(KernelError) in
            guard !state.destroyed else { return }
            try backend.remove()
            state.destroyed = true
        }
    }

    /// Removes a cgroup that a killed Berth process left behind, with everything below it.
    ///
    /// `<root>/<path>` and every cgroup below it, in every hierarchy, has its processes killed,
    /// then is removed, deepest first. All kills come before any removal: on
    /// cgroup v1 a frozen process dies only when its freezer directory is thawed, which may come
    /// after the other hierarchies' directories in the walk. Pass a path this process owns alone:
    /// containers of another live program under it would be killed too.
    ///
    /// - Parameters:
    ///   - path: A relative cgroup path, such as `berth/<container id>`.
    ///   - hierarchy: The hierarchy to clean.
    /// - Throws: ``KernelError`` naming the directory that could not be listed or removed.
    package static func removeStale(_ path: String, in hierarchy: CgroupHierarchy) throws(KernelError) {
        try validate(path: path)
        var directories: [String] = []
        for root in hierarchy.roots where access(root + "/" + path, F_OK) == 0 {
            directories += try CgroupFile.subdirectories(deepestFirst: root + "/" + path) + [root + "/" + path]
        }
        for directory in directories { try CgroupFile.killProcesses(in: directory) }
        for directory in directories { try CgroupFile.removeDirectory(directory) }
    }

    /// Rejects absolute paths, empty components, `.` and `..`, which would escape or confuse
    /// the hierarchy.
    static func validate(path: String) throws(KernelError) {
        let components = path.split(separator: "/", omittingEmptySubsequences: false)
        guard !path.isEmpty, components.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }) else {
            throw KernelError(
                code: .invalidArgument,
                detail: "cgroup path \"\(path)\": must be relative, without empty, . or .. components")
        }
    }

    private func checkAlive(_ operation: String) throws(KernelError) {
        if state.withLock({ $0.destroyed }) {
            throw KernelError(code: .invalidState, detail: "\(operation) in cgroup \(path): already destroyed")
        }
    }

    /// Runs `step` until it returns `true`, sleeping 1, 2, 4 … up to 50 ms in between, for at
    /// most 5 seconds.
    private func poll(_ operation: String, _ step: () throws(KernelError) -> Bool) async throws(KernelError) {
        let deadline = ContinuousClock.now + .seconds(5)
        var pause = Duration.milliseconds(1)
        while try !step() {
            guard ContinuousClock.now < deadline else {
                throw KernelError(code: .invalidState, detail: "\(operation) cgroup \(path): not done after 5 seconds")
            }
            do {
                try await Task.sleep(for: pause)
            } catch {
                throw KernelError(code: .invalidState, detail: "\(operation) cgroup \(path): cancelled")
            }
            pause = min(pause * 2, .milliseconds(50))
        }
    }
}

/// What differs between the two cgroup interfaces, one implementation per version
/// (``Cgroup/V1``: a directory in each controller's hierarchy; ``Cgroup/V2``: one directory in
/// the unified hierarchy). ``Cgroup`` chooses one from the hierarchy's layout when it creates
/// or opens the cgroup, and keeps what both share: the limits in force, whether it is
/// destroyed, and the checks and polling around these calls.
protocol CgroupBackend: Sendable {
    /// The interface.
    var version: CgroupVersion { get }
    /// The `cgroup.procs` file to list the cgroup's processes from.
    var processesFile: String { get }
    /// The directory opened `O_PATH` for `clone3(CLONE_INTO_CGROUP)`: v2 only, until ``remove()``.
    var directoryDescriptor: Int32? { get }
    /// Moves a process into the cgroup.
    func attach(pid: Int32) throws(KernelError)
    /// Writes the limits that `changes` sets, computed from `merged` (`changes` with the limits
    /// already in force, `previous`, which is `nil` for a new cgroup). Berth is the only writer
    /// of its cgroups' files, so `merged` is what the kernel holds afterwards.
    func apply(_ changes: CgroupResources, merged: CgroupResources, previous: CgroupResources?) throws(KernelError)
    /// One step of freezing: asks for it and says whether the kernel reports it done.
    func freeze() throws(KernelError) -> Bool
    /// Asks the kernel to thaw the cgroup.
    func thaw() throws(KernelError)
    /// Whether the kernel reports every task frozen.
    var isFrozen: Bool { get throws(KernelError) }
    /// Sends `SIGKILL` to every process in the cgroup.
    func killAll() throws(KernelError)
    /// Reads usage and limits.
    func stats() throws(KernelError) -> CgroupStats
    /// Removes the cgroup's directories (the parents stay) and releases what it holds.
    func remove() throws(KernelError)
}

/// Reading, writing and parsing cgroup files with plain system calls: cgroup files are small
/// and a container start writes a handful, so there is no buffering layer.
enum CgroupFile {
    /// Reads a whole file.
    static func read(_ path: String) throws(KernelError) -> String {
        String(decoding: try KernelError.from(try readWholeFile(path)), as: UTF8.self)
    }

    /// Reads a file, or returns `nil` when it does not exist (its controller is not enabled).
    static func readIfPresent(_ path: String) throws(KernelError) -> String? {
        do {
            return try read(path)
        } catch where error.errno == .noSuchFileOrDirectory {
            return nil
        }
    }

    /// Writes `value` to a cgroup file in one `write`, which is how the kernel expects a
    /// setting: each write is parsed on its own.
    static func write(_ path: String, _ value: String) throws(KernelError) {
        let fd = try KernelError.from(try sys("open \(path)") { open(path, O_WRONLY | O_CLOEXEC) })
        defer { close(fd) }
        let bytes = Array(value.utf8)
        let written = try KernelError.from(try sys("write \(path)") {
            bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        })
        guard written == bytes.count else {
            throw KernelError(
                code: .syscallFailed, detail: "write \(path): short write of \(written) of \(bytes.count) bytes")
        }
    }

    /// Creates a directory; `false` when it already existed.
    static func makeDirectory(_ path: String) throws(KernelError) -> Bool {
        do {
            _ = try KernelError.from(try sys("mkdir \(path)") { mkdir(path, 0o755) })
            return true
        } catch where error.errno == .fileExists {
            return false
        }
    }

    /// Removes a cgroup directory; a missing one counts as removed.
    ///
    /// `EBUSY` is retried with pauses of 1, 2, 4 … 100 ms (about 430 ms in all): a task that
    /// got SIGKILL keeps the cgroup populated until it has finished exiting.
    static func removeDirectory(_ path: String) throws(KernelError) {
        var pause: Int64 = 1_000_000
        for attempt in 0..<10 {
            do {
                _ = try KernelError.from(try sys("rmdir \(path)") { rmdir(path) })
                return
            } catch where error.errno == .noSuchFileOrDirectory {
                return
            } catch where error.errno == .resourceBusy && attempt < 9 {
                var request = timespec(tv_sec: 0, tv_nsec: Int(pause))
                var remaining = timespec()
                while nanosleep(&request, &remaining) == -1 && errno == EINTR { request = remaining }
                pause = min(pause * 2, 100_000_000)
            }
        }
    }

    /// Every directory below `top` (not `top` itself), children before their parent; empty
    /// when `top` does not exist.
    static func subdirectories(deepestFirst top: String) throws(KernelError) -> [String] {
        let entries: [(name: String, type: UInt8)]
        do throws(SystemError) {
            entries = try directoryEntries(atPath: top)
        } catch where error.is(.noSuchFileOrDirectory) {
            return []
        } catch {
            throw KernelError(error)
        }
        var result: [String] = []
        for name in entries.filter({ $0.type == UInt8(DT_DIR) }).map(\.name).sorted() {
            let child = top + "/" + name
            result += try subdirectories(deepestFirst: child)
            result.append(child)
        }
        return result
    }

    /// Kills the processes in one cgroup directory: through `cgroup.kill` where the kernel has
    /// it (cgroup v2, Linux 5.14), otherwise by pid, in rounds until no new pid turns up. A v1
    /// freezer directory is thawed after the kill: frozen tasks die only once thawed (runc's
    /// `signalAllProcesses` freezes, kills and thaws for the same reason).
    static func killProcesses(in directory: String) throws(KernelError) {
        do {
            try write(directory + "/cgroup.kill", "1")
            return
        } catch where error.errno == .noSuchFileOrDirectory {
            // No cgroup.kill: cgroup v1 or a kernel before 5.14.
        }
        var killed: Set<Int32> = []
        // 100 rounds is far beyond what a fork loop survives: each round kills every process
        // seen, and a new one must be forked by a process not yet killed.
        for _ in 0..<100 {
            let file = directory + "/cgroup.procs"
            let pids = Set(try parsePids(read(file), file: file)).subtracting(killed)
            if pids.isEmpty { break }
            for pid in pids {
                do {
                    _ = try KernelError.from(try sys("kill \(pid) in \(directory)") { kill(pid, SIGKILL) })
                } catch where error.errno == .noSuchProcess {
                    // Exited since cgroup.procs was read.
                }
            }
            killed.formUnion(pids)
        }
        if let state = try readIfPresent(directory + "/freezer.state"), !state.hasPrefix("THAWED") {
            try write(directory + "/freezer.state", "THAWED")
        }
    }

    /// Parses `cgroup.procs`: one pid per line.
    static func parsePids(_ text: String, file: String) throws(KernelError) -> [Int32] {
        var pids: [Int32] = []
        for line in text.split(separator: "\n") {
            guard let pid = Int32(line) else {
                throw KernelError(code: .syscallFailed, detail: "parse \(file): unexpected line \"\(line)\"")
            }
            pids.append(pid)
        }
        return pids
    }

    /// Parses the `key value` lines of files such as `memory.events`, `cpu.stat` and v1
    /// `memory.oom_control`. Lines that are not a key and a number are skipped.
    static func parseKeyedValues(_ text: String) -> [String: UInt64] {
        var values: [String: UInt64] = [:]
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count == 2, let value = UInt64(fields[1]) { values[String(fields[0])] = value }
        }
        return values
    }

    /// Parses a single number, as in `pids.current`; `nil` for `max`.
    static func parseNumber(_ text: String, file: String) throws(KernelError) -> UInt64? {
        let trimmed = text.filter { !$0.isWhitespace }
        if trimmed == "max" { return nil }
        guard let value = UInt64(trimmed) else {
            throw KernelError(code: .syscallFailed, detail: "parse \(file): unexpected value \"\(trimmed)\"")
        }
        return value
    }

    /// The value cgroup files take for a limit: the number, or `max` for none.
    /// The first of `names` that exists in `directory`.
    ///
    /// - Throws: ``KernelError`` with ``KernelError/Code/unsupported`` naming them all when none does.
    static func firstPresent(_ names: [String], in directory: String, for operation: String) throws(KernelError) -> String {
        guard let name = names.first(where: { access(directory + "/" + $0, F_OK) == 0 }) else {
            throw KernelError(code: .unsupported,
                              detail: "\(operation) of cgroup \(directory): it has no \(names.joined(separator: " or "))")
        }
        return directory + "/" + name
    }

    /// Writes a block device's throttle; the kernel answers `ENODEV` for a device it does not
    /// know or a partition, which becomes an error naming the device.
    static func writeThrottle(_ path: String, _ value: String, device: BlockDevice) throws(KernelError) {
        do {
            try write(path, value)
        } catch where error.errno == Errno(rawValue: ENODEV) {
            throw KernelError(code: .invalidArgument, errno: Errno(rawValue: ENODEV),
                              detail: "limit block I/O on \(device): no such disk (partitions cannot be throttled)")
        }
    }

    static func limit(_ value: Int64) -> String { value < 0 ? "max" : String(value) }
}
