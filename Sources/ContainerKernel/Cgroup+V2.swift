import CSyscalls
import Glibc
import SystemSupport

extension Cgroup {
    /// A cgroup on cgroup v2: one directory in the unified hierarchy
    /// (`Documentation/admin-guide/cgroup-v2.rst`).
    struct V2: Sendable {
        /// The cgroup's directory.
        let directory: String

        /// Creates the directory, enabling controllers on the way, writes the limits and
        /// attaches the device program; see ``Cgroup/create(_:resources:in:)``.
        ///
        /// - Returns: The cgroup, its directory opened `O_PATH`, and the device program.
        static func create(
            _ path: String, mountPoint: String, resources: CgroupResources
        ) throws(KernelError) -> (V2, directoryDescriptor: Int32, deviceProgram: Int32) {
            var directory = mountPoint
            let components = path.split(separator: "/")
            for (index, component) in components.enumerated() {
                // A controller reaches a cgroup only if every ancestor lists it in
                // cgroup.subtree_control ("Top-down Constraint" in cgroup-v2.rst).
                try enableControllers(in: directory)
                directory += "/" + component
                if try !CgroupFile.makeDirectory(directory) && index == components.count - 1 {
                    throw KernelError(code: .invalidState, errno: .fileExists, detail: "create cgroup \(directory)")
                }
            }
            let cgroup = V2(directory: directory)
            var descriptor: Int32?
            do throws(KernelError) {
                // O_PATH suffices for clone3(CLONE_INTO_CGROUP) and BPF_PROG_ATTACH, which take
                // the descriptor without reading through it.
                let fd = try KernelError.from(try sys("open \(directory)") { open(directory, CK_O_PATH | O_DIRECTORY | O_CLOEXEC) })
                descriptor = fd
                try cgroup.apply(resources, merged: resources)
                let program = try DeviceFilter.attach(resources.devices, to: fd, path: directory)
                return (cgroup, fd, program)
            } catch {
                if let descriptor { close(descriptor) }
                try? CgroupFile.removeDirectory(directory)
                throw error
            }
        }

        /// Opens an existing cgroup's directory (its device program stays attached to it).
        static func existing(_ directory: String) throws(KernelError) -> (V2, directoryDescriptor: Int32) {
            let fd = try KernelError.from(try sys("open cgroup \(directory)") { open(directory, CK_O_PATH | O_DIRECTORY | O_CLOEXEC) })
            return (V2(directory: directory), fd)
        }

        /// Enables in `directory`'s `cgroup.subtree_control` those of Berth's controllers that
        /// its `cgroup.controllers` offers and that are not enabled yet, in one write.
        ///
        /// The kernel refuses this with `EBUSY` in a non-root cgroup that has processes of its
        /// own ("No Internal Process Constraint"), so Berth's cgroups must live below a parent
        /// that holds no processes.
        ///
        /// - Throws: ``KernelError`` with code ``KernelError/Code/invalidState`` when the kernel
        ///   refuses because `directory` holds processes, naming the way out: Berth is then
        ///   embedded in a process that sits in that cgroup (in a container with its own cgroup
        ///   namespace, or in a systemd unit whose cgroup is the mount's root).
        private static func enableControllers(in directory: String) throws(KernelError) {
            let available = controllers(in: try CgroupFile.read(directory + "/cgroup.controllers"))
            let enabled = controllers(in: try CgroupFile.read(directory + "/cgroup.subtree_control"))
            let wanted = available.intersection(CgroupController.unified).subtracting(enabled)
            guard !wanted.isEmpty else { return }
            do {
                try CgroupFile.write(
                    directory + "/cgroup.subtree_control", wanted.sorted().map { "+" + $0.rawValue }.joined(separator: " "))
            } catch where error.errno == .resourceBusy {
                throw KernelError(
                    code: .invalidState, errno: .resourceBusy,
                    detail: "enable cgroup controllers \(wanted.names) in \(directory): it holds processes, and cgroup v2 "
                        + "hands controllers down only from a cgroup without any; move the processes of "
                        + "\(directory)/cgroup.procs to a child cgroup first (as a container's init does)")
            }
        }

        private static func controllers(in text: String) -> Set<CgroupController> {
            Set(text.split(whereSeparator: \.isWhitespace).compactMap { CgroupController(rawValue: String($0)) })
        }

        /// Writes the limits that `changes` sets, computed from `merged` (`changes` with the
        /// limits already in force). Berth is the only writer of its cgroups' files, so `merged`
        /// is what the kernel holds.
        ///
        /// - Throws: ``KernelError`` with code ``KernelError/Code/unsupported`` naming the
        ///   controllers a requested limit needs that the cgroup does not have.
        func apply(_ changes: CgroupResources, merged: CgroupResources) throws(KernelError) {
            let available = Self.controllers(in: try CgroupFile.read(directory + "/cgroup.controllers"))
            let missing = changes.requiredControllers.subtracting(available)
            guard missing.isEmpty else {
                throw KernelError(
                    code: .unsupported,
                    detail: "set limits on cgroup \(directory): cgroup v2 controller \(missing.names) is not available")
            }
            if changes.memoryLimit != nil || changes.memorySwapLimit != nil {
                if let memory = merged.memoryLimit {
                    try CgroupFile.write(directory + "/memory.max", CgroupFile.limit(memory))
                }
                if let swap = Self.swapMax(memory: merged.memoryLimit, memorySwap: merged.memorySwapLimit) {
                    do {
                        try CgroupFile.write(directory + "/memory.swap.max", swap)
                    } catch where error.errno == .noSuchFileOrDirectory {
                        throw KernelError(
                            code: .unsupported,
                            detail: "set memory+swap limit: \(directory)/memory.swap.max is missing")
                    }
                }
            }
            if let shares = changes.cpuShares {
                try CgroupFile.write(directory + "/cpu.weight", String(Self.cpuWeight(shares: shares)))
            }
            if changes.cpuQuota != nil || changes.cpuPeriod != nil {
                // Both fields from `merged`: writing a period alone as "max <period>" would
                // lift a quota set earlier.
                let value = Self.formatCPUMax(quota: merged.cpuQuota, period: merged.cpuPeriod)
                try CgroupFile.write(directory + "/cpu.max", value)
            }
            if let cpus = changes.cpusetCpus { try CgroupFile.write(directory + "/cpuset.cpus", cpus) }
            if let mems = changes.cpusetMems { try CgroupFile.write(directory + "/cpuset.mems", mems) }
            if let limit = changes.pidsLimit {
                try CgroupFile.write(directory + "/pids.max", limit > 0 ? String(limit) : "max")
            }
        }

        /// Attaches a program for `rules`, then detaches `old`: while both are attached an
        /// access must pass both, so the cgroup is never more permissive than either list.
        ///
        /// - Returns: The new program's descriptor.
        func replaceDeviceProgram(
            _ old: Int32?, with rules: [DeviceRule], directory descriptor: Int32
        ) throws(KernelError) -> Int32 {
            let program = try DeviceFilter.attach(rules, to: descriptor, path: directory)
            if let old { try DeviceFilter.detach(old, from: descriptor, path: directory) }
            return program
        }

        /// `cpu.weight` for Docker's `--cpu-shares`: the OCI runtime spec's conversion
        /// (`docs/cgroup-v2.md` in opencontainers/runc), mapping 2...262144 onto 1...10000.
        static func cpuWeight(shares: UInt64) -> UInt64 {
            1 + ((shares - 2) * 9999) / 262_142
        }

        /// `cpu.max`: `"$QUOTA $PERIOD"`, `max` for no quota; without a period the kernel keeps
        /// the current one.
        static func formatCPUMax(quota: Int64?, period: UInt64?) -> String {
            let quotaField = quota.map { $0 < 0 ? "max" : String($0) } ?? "max"
            return period.map { "\(quotaField) \($0)" } ?? quotaField
        }

        /// Parses `cpu.max`; the quota is `nil` for `max`.
        static func parseCPUMax(_ text: String) -> (quota: Int64?, period: UInt64?) {
            let fields = text.split(whereSeparator: \.isWhitespace)
            return (fields.first.flatMap { Int64($0) }, fields.dropFirst().first.flatMap { UInt64($0) })
        }

        /// `memory.swap.max` for Docker's memory+swap total: cgroup v2 limits swap alone, so it
        /// is the total less the memory limit (runc's `ConvertMemorySwapToCgroupV2Value`).
        /// `nil` when no swap limit is set.
        static func swapMax(memory: Int64?, memorySwap: Int64?) -> String? {
            guard let memorySwap else { return nil }
            guard memorySwap >= 0, let memory, memory >= 0 else { return "max" }
            return String(memorySwap - memory)
        }

        /// Sums `rbytes` and `wbytes` of `io.stat` (`8:0 rbytes=4096 wbytes=0 rios=1 …`) over
        /// all devices.
        static func parseIOStat(_ text: String) -> (read: UInt64, write: UInt64) {
            var read: UInt64 = 0
            var write: UInt64 = 0
            for field in text.split(whereSeparator: \.isWhitespace) {
                let pair = field.split(separator: "=", maxSplits: 1)
                guard pair.count == 2, let value = UInt64(pair[1]) else { continue }
                switch pair[0] {
                case "rbytes": read += value
                case "wbytes": write += value
                default: break
                }
            }
            return (read, write)
        }

        func attach(pid: Int32) throws(KernelError) {
            try CgroupFile.write(directory + "/cgroup.procs", String(pid))
        }

        /// One step of freezing: sets `cgroup.freeze` (Linux 5.2) and says whether the kernel
        /// reports the cgroup frozen yet.
        func freeze() throws(KernelError) -> Bool {
            do {
                try CgroupFile.write(directory + "/cgroup.freeze", "1")
            } catch where error.errno == .noSuchFileOrDirectory {
                throw KernelError(
                    code: .unsupported,
                    detail: "freeze cgroup \(directory): no cgroup.freeze (Linux 5.2 or later needed)")
            }
            return try isFrozen
        }

        func thaw() throws(KernelError) {
            try CgroupFile.write(directory + "/cgroup.freeze", "0")
        }

        /// `frozen 1` in `cgroup.events`, which the kernel sets once every task has stopped
        /// (`cgroup.freeze` itself only says what was asked).
        var isFrozen: Bool {
            get throws(KernelError) {
                CgroupFile.parseKeyedValues(try CgroupFile.read(directory + "/cgroup.events"))["frozen"] == 1
            }
        }

        func killAll() throws(KernelError) {
            try CgroupFile.killProcesses(in: directory)
        }

        func stats() throws(KernelError) -> CgroupStats {
            var stats = CgroupStats()
            stats.memoryUsage = try number("memory.current")
            stats.memoryPeak = try number("memory.peak")
            stats.memoryLimit = try number("memory.max")
            stats.oomKills = try CgroupFile.readIfPresent(directory + "/memory.events")
                .flatMap { CgroupFile.parseKeyedValues($0)["oom_kill"] }
            stats.cpuUsageNanoseconds = try CgroupFile.readIfPresent(directory + "/cpu.stat")
                .flatMap { CgroupFile.parseKeyedValues($0)["usage_usec"] }
                .map { $0 * 1000 }
            if let text = try CgroupFile.readIfPresent(directory + "/cpu.max") {
                (stats.cpuQuota, stats.cpuPeriod) = Self.parseCPUMax(text)
            }
            stats.pidsCurrent = try number("pids.current")
            stats.pidsLimit = try number("pids.max")
            if let text = try CgroupFile.readIfPresent(directory + "/io.stat") {
                (stats.blockReadBytes, stats.blockWriteBytes) = Self.parseIOStat(text)
            }
            return stats
        }

        /// A one-number file of the cgroup, `nil` when missing or `max`.
        private func number(_ name: String) throws(KernelError) -> UInt64? {
            let file = directory + "/" + name
            return try CgroupFile.readIfPresent(file).flatMap { (text) throws(KernelError) in
                try CgroupFile.parseNumber(text, file: file)
            }
        }
    }
}
