import CCap
import Glibc

/// One Linux capability, such as `CAP_NET_BIND_SERVICE`.
///
/// Names are accepted with or without the `CAP_` prefix and in any case, as Docker accepts them
/// (`--cap-add net_admin`).
public struct Capability: RawRepresentable, Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The kernel's number for the capability (`CAP_CHOWN` is 0).
    public var rawValue: Int32

    /// Wraps a capability number.
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// Looks a capability up by name (`"CAP_CHOWN"`, `"chown"`).
    ///
    /// - Throws: ``KernelError`` with code ``KernelError/Code/invalidArgument`` when the name is
    ///   unknown to libcap.
    public init(named name: String) throws(KernelError) {
        var upper = name.uppercased()
        if !upper.hasPrefix("CAP_") { upper = "CAP_" + upper }
        var value: cap_value_t = 0
        guard cap_from_name(upper.lowercased(), &value) == 0, value >= 0 else {
            throw KernelError(code: .invalidArgument, detail: "unknown capability \"\(name)\"")
        }
        self.rawValue = value
    }

    /// The capability's name in upper case with the `CAP_` prefix, as Docker prints it.
    public var name: String {
        guard let cName = cap_to_name(cap_value_t(rawValue)) else { return "CAP_\(rawValue)" }
        defer { cap_free(cName) }
        return String(cString: cName).uppercased()
    }

    public var description: String { name }

    public static func < (lhs: Capability, rhs: Capability) -> Bool { lhs.rawValue < rhs.rawValue }

    /// The highest capability number the running kernel knows (`/proc/sys/kernel/cap_last_cap`).
    public static var lastSupported: Capability { Capability(rawValue: Int32(cap_max_bits()) - 1) }

    /// Every capability the kernel knows that this process can still pass on (those in its
    /// bounding set): what `--privileged` grants. A capability missing from the host process's
    /// bounding set (`CAP_SYS_RESOURCE` on some CI machines) cannot be given to a child.
    public static var all: Set<Capability> {
        Set((0...lastSupported.rawValue).filter { cap_get_bound(cap_value_t($0)) == 1 }
            .map(Capability.init(rawValue:)))
    }

    public static let chown = Capability(rawValue: 0)
    public static let dacOverride = Capability(rawValue: 1)
    public static let dacReadSearch = Capability(rawValue: 2)
    public static let fowner = Capability(rawValue: 3)
    public static let fsetid = Capability(rawValue: 4)
    public static let kill = Capability(rawValue: 5)
    public static let setgid = Capability(rawValue: 6)
    public static let setuid = Capability(rawValue: 7)
    public static let setpcap = Capability(rawValue: 8)
    public static let netBindService = Capability(rawValue: 10)
    public static let netAdmin = Capability(rawValue: 12)
    public static let netRaw = Capability(rawValue: 13)
    public static let sysChroot = Capability(rawValue: 18)
    public static let sysPtrace = Capability(rawValue: 19)
    public static let sysAdmin = Capability(rawValue: 21)
    public static let sysBoot = Capability(rawValue: 22)
    public static let sysRawio = Capability(rawValue: 17)
    public static let sysModule = Capability(rawValue: 16)
    public static let sysResource = Capability(rawValue: 24)
    public static let mknod = Capability(rawValue: 27)
    public static let auditWrite = Capability(rawValue: 29)
    public static let setfcap = Capability(rawValue: 31)

    /// Docker's default set of 14 capabilities (`CapEff: 00000000a80425fb`).
    public static let dockerDefault: Set<Capability> = [
        .chown, .dacOverride, .fowner, .fsetid, .kill, .setgid, .setuid, .setpcap,
        .netBindService, .netRaw, .sysChroot, .mknod, .auditWrite, .setfcap,
    ]
}

/// The five capability sets of a process.
///
/// By default all of bounding, effective and permitted hold Docker's 14 capabilities, and
/// inheritable and ambient are empty, which is what `docker run` gives a root process.
public struct CapabilitySets: Sendable, Hashable {
    /// Capabilities the process can ever regain (`PR_CAPBSET_DROP` removes the rest).
    public var bounding: Set<Capability>
    /// Capabilities the kernel checks.
    public var effective: Set<Capability>
    /// Capabilities the process may make effective.
    public var permitted: Set<Capability>
    /// Capabilities kept across `execve` of a file with matching inheritable file capabilities.
    public var inheritable: Set<Capability>
    /// Capabilities kept across `execve` for unprivileged programs (`PR_CAP_AMBIENT`).
    public var ambient: Set<Capability>

    /// Creates capability sets.
    public init(
        bounding: Set<Capability>, effective: Set<Capability>, permitted: Set<Capability>,
        inheritable: Set<Capability> = [], ambient: Set<Capability> = []
    ) {
        self.bounding = bounding
        self.effective = effective
        self.permitted = permitted
        self.inheritable = inheritable
        self.ambient = ambient
    }

    /// The same set in bounding, effective and permitted; nothing inheritable or ambient.
    public init(_ capabilities: Set<Capability>) {
        self.init(bounding: capabilities, effective: capabilities, permitted: capabilities)
    }

    /// What `docker run` gives a process by default.
    public static var dockerDefault: CapabilitySets { CapabilitySets(Capability.dockerDefault) }

    /// Every capability this process can pass on, as `--privileged` gives.
    public static var all: CapabilitySets { CapabilitySets(Capability.all) }

    /// Adds and drops capabilities the way `--cap-add` and `--cap-drop` do, on every set that
    /// holds them.
    ///
    /// - Parameters:
    ///   - add: Capabilities to grant.
    ///   - drop: Capabilities to remove; dropping wins over adding.
    /// - Returns: The adjusted sets.
    public func adding(_ add: Set<Capability>, dropping drop: Set<Capability> = []) -> CapabilitySets {
        var copy = self
        copy.bounding = bounding.union(add).subtracting(drop)
        copy.effective = effective.union(add).subtracting(drop)
        copy.permitted = permitted.union(add).subtracting(drop)
        copy.inheritable = inheritable.subtracting(drop)
        copy.ambient = ambient.subtracting(drop)
        return copy
    }
}

extension Set where Element == Capability {
    /// The set as the kernel's 64-bit mask, as `/proc/<pid>/status` prints it.
    package var mask: UInt64 { reduce(0) { $0 | (1 << UInt64($1.rawValue)) } }
}
