public import ContainerKernel
import Layers

// The sandbox controls of a configuration beyond Docker's defaults: the checks made before
// anything is created, the user-namespace range, and the hardened preset.

/// The host ids a container's user namespace maps its ids to (`--userns-remap`): container
/// uid and gid `n` are host uid and gid `hostID + n`, for `n` below `size`.
///
/// ```swift
/// config.userNamespace = UserNamespaceRemapping(hostID: 100_000)   // root is host uid 100000
/// ```
public struct UserNamespaceRemapping: Sendable, Codable, Hashable {
    /// The host uid and gid that the container's root (0) is.
    public var hostID: UInt32
    /// How many consecutive ids are mapped; ids at or above it do not exist in the container.
    public var size: UInt32

    /// Maps the container's ids `0..<size` to the host's `hostID..<hostID + size`.
    ///
    /// ``ContainerConfiguration/validate()`` refuses a range that is empty, that runs past the
    /// last valid id (4294967294), or that overlaps the container's own ids `0..<size` (it would
    /// hold host root, and the owners of the image's files could not be told from mapped ones).
    ///
    /// - Parameters:
    ///   - hostID: The first host id; `100000` is where `/etc/subuid` ranges usually start.
    ///   - size: How many ids; 65536 covers every id an image's files normally use.
    public init(hostID: UInt32, size: UInt32 = 65536) {
        self.hostID = hostID
        self.size = size
    }

    /// The mapping as the kernel takes it, for both `uid_map` and `gid_map`.
    var mappings: [IDMapping] { [IDMapping(containerID: 0, hostID: hostID, size: size)] }

    /// The owners the root filesystem's files need for the namespace to show the image's.
    var ownerShift: OwnerShift { OwnerShift(hostID: hostID, size: size) }
}

extension ContainerConfiguration {
    /// A hardened configuration for code you do not trust, such as a snippet a request
    /// handler runs.
    ///
    /// No network (only `lo`); a read-only root filesystem with a 16 MiB tmpfs at `/tmp`; every
    /// capability dropped; `no_new_privs`; a user namespace (root in the container is host id
    /// 100000, see ``userNamespace`` for what that costs at the first create); at most 64 processes,
    /// 256 MiB of memory and no swap, one CPU's time; Docker's seccomp profile and masked paths;
    /// a deadline of 60 seconds (``timeout``: the run is killed and ends timed out); at most
    /// 1 MiB of log kept (older output is dropped, and the log says so). Change any field of
    /// the result as needed.
    ///
    /// ```swift
    /// var config = ContainerConfiguration.untrusted(image: "python:3-alpine", command: ["python3", "-c", snippet])
    /// config.resources.memoryLimit = 64 << 20
    /// ```
    ///
    /// Needs user namespaces (see ``userNamespace``) and, for the limits, the cgroup
    /// controllers `pids`, `memory` and `cpu`.
    ///
    /// - Parameters:
    ///   - image: The image reference or id.
    ///   - command: Replaces the image's `Cmd`; `nil` keeps it.
    /// - Returns: The configuration.
    public static func untrusted(image: String, command: [String]? = nil) -> ContainerConfiguration {
        var configuration = ContainerConfiguration(image: image, command: command)
        configuration.network = .none
        configuration.readOnlyRootfs = true
        configuration.mounts = [.tmpfs(target: "/tmp", options: "size=16m,mode=1777")]
        configuration.capabilitiesDropped = Capability.all
        configuration.noNewPrivileges = true
        configuration.userNamespace = UserNamespaceRemapping(hostID: 100_000)
        configuration.resources.pidsLimit = 64
        configuration.resources.memoryLimit = 256 << 20
        configuration.resources.memorySwapLimit = 256 << 20
        configuration.resources.cpus = 1
        configuration.timeout = .seconds(60)
        configuration.logLimits = LogLimits(maximumSize: 1 << 20, maximumFiles: 1)
        return configuration
    }

    /// Checks what can be checked without the image or the kernel: the sysctls are
    /// namespaced ones the container may set, the user-namespace range is valid, the resource
    /// limits and the OOM score adjustment are in range.
    ///
    /// ``ContainerRuntime/create(_:)`` calls it before it makes anything, so a configuration it
    /// refuses leaves nothing behind. Costs no system call.
    ///
    /// - Throws: ``ContainerError`` with ``ContainerError/Code/invalidArgument`` naming the
    ///   field and the value.
    public func validate() throws(ContainerError) {
        for (key, value) in sysctls.sorted(by: { $0.key < $1.key }) {
            try validateSysctl(key, value)
        }
        if let range = userNamespace {
            let last = UInt64(range.hostID) + UInt64(range.size) - 1
            guard range.size > 0, last < UInt64(UInt32.max), range.hostID >= range.size else {
                throw ContainerError(code: .invalidArgument, detail: "invalid user namespace range: host ids \(range.hostID) to \(last) for \(range.size) ids must be non-empty, end below 4294967295 and not overlap the container's ids 0 to \(Int64(range.size) - 1)")
            }
        }
        for limit in resourceLimits where limit.soft > limit.hard {
            throw ContainerError(code: .invalidArgument, detail: "invalid resource limit \(limit.resource.rawValue): soft limit \(limit.soft) is above the hard limit \(limit.hard)")
        }
        if let adjustment = oomScoreAdjustment, !(-1000...1000).contains(adjustment) {
            throw ContainerError(code: .invalidArgument, detail: "invalid OOM score adjustment \(adjustment): use -1000 to 1000")
        }
    }

    /// The System V IPC sysctls, which belong to the container's IPC namespace.
    private static let ipcSysctls: Set<String> = [
        "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax",
        "kernel.shmmni", "kernel.shm_rmid_forced",
    ]

    private func validateSysctl(_ key: String, _ value: String) throws(ContainerError) {
        let components = key.split(separator: ".", omittingEmptySubsequences: false)
        let wellFormed = components.count > 1 && components.allSatisfy { component in
            !component.isEmpty && component.utf8.allSatisfy { byte in
                (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a)
                    || byte == 0x5f || byte == 0x2d
            }
        }
        guard wellFormed, !value.contains("\n") else {
            throw ContainerError(code: .invalidArgument, detail: "invalid sysctl \(key)=\(value)")
        }
        if Self.ipcSysctls.contains(key) || key.hasPrefix("fs.mqueue.") { return }
        if key.hasPrefix("net.") {
            switch network {
            case .none, .bridge: return
            case .host, .container:
                throw ContainerError(code: .invalidArgument, detail: "sysctl \(key) is refused: the container shares another network namespace (\(network))")
            }
        }
        throw ContainerError(code: .invalidArgument, detail: "sysctl \(key) is not namespaced: a container may set net.*, fs.mqueue.* and the System V IPC sysctls (kernel.shm*, kernel.msg*, kernel.sem)")
    }
}
