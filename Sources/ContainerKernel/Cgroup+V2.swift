import CSyscalls
import Glibc
import Synchronization
import SystemSupport

extension Cgroup {
    /// A cgroup on cgroup v2: one directory in the unified hierarchy
    /// (`Documentation/admin-guide/cgroup-v2.rst`).
    final class V2: CgroupBackend {
        /// The cgroup's directory.
        let directory: String
        private let descriptors: Mutex<Descriptors>

        /// What the cgroup holds open until it is removed.
        struct Descriptors {
            /// The directory, `O_PATH`.
            var directory: Int32?
            /// The attached device program; `nil` for a cgroup opened with ``existing(_:)``
            /// (its program stays attached to the directory).
            var deviceProgram: Int32?

            /// Closes both; the one place they are closed.
            mutating func close() {
                if let fd = deviceProgram { Glibc.close(fd) }
                deviceProgram = nil
                if let fd = directory { Glibc.close(fd) }
                directory = nil
            }
        }

        private init(directory: String, descriptor: Int32) {
            self.directory = directory
            descriptors = Mutex(Descriptors(directory: descriptor))
        }

        deinit {
            descriptors.withLock { $0.close() }
        }

        var version: CgroupVersion { .v2 }
        var processesFile: String { directory + "/cgroup.procs" }
        var directoryDescriptor: Int32? { descriptors.withLock { $0.directory } }

        /// Creates the directory, enabling controllers on the way, writes the limits and
        /// attaches the device program; see ``Cgroup/create(_:resources:in:)``.
        static func create(
            _ path: String, mountPoint: String, resources: CgroupResources
        ) throws(KernelError) -> V2 {
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
            do throws(KernelError) {
                // O_PATH suffices for clone3(CLONE_INTO_CGROUP) and BPF_PROG_ATTACH, which take
                // the descriptor without reading through it.
                let fd = try KernelError.from(try sys("open \(directory)") { open(directory, CK_O_PATH | O_DIRECTORY | O_CLOEXEC) })
                // From here the new object owns the descriptor and closes it, whatever happens.
                let cgroup = V2(directory: directory, descriptor: fd)
                try cgroup.apply(resources, merged: resources, previous: nil)
                return cgroup
            } catch {
                try? CgroupFile.removeDirectory(directory)
                throw error
            }
        }

        /// Opens an existing cgroup's directory (its device program stays attached to it).
        static func existing(_ directory: String) throws(KernelError) -> V2 {
            let fd = try KernelError.from(try sys("open cgroup \(directory)") { open(directory, CK_O_PATH | O_DIRECTORY | O_CLOEXEC) })
            return V2(directory: directory, descriptor: fd)
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

        /// Writes the limits, and attaches a device program for new device rules.
        ///
        /// - Throws: ``KernelError`` with code ``KernelError/Code/unsupported`` naming the
        ///   controllers a requested limit needs that the cgroup does not have.
        func apply(_ changes: CgroupResources, merged: CgroupResources, previous: CgroupResources?) throws(KernelError) {
            let available = Self.controllers(in: try CgroupFile.read(directory + "/cgroup.controllers"))
            let missing = changes.requiredControllers(.v2).subtracting(available)
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
            if let weight = changes.blockIOWeight {
                let file = try CgroupFile.firstPresent(["io.weight", "io.bfq.weight"], in: directory, for: "set the block I/O weight")
                try CgroupFile.write(file, file.hasSuffix("/io.weight") ? "default \(Self.ioWeight(blkioWeight: weight))" : String(weight))
            }
            for throttle in changes.blockIOThrottles ?? [] {
                let number = try throttle.device.number()
                let fields = throttle.rates.compactMap { rate, _, key in rate.map { "\(key)=\($0 == 0 ? "max" : String($0))" } }
                guard !fields.isEmpty else { continue }
                try CgroupFile.writeThrottle(directory + "/io.max", ([number] + fields).joined(separator: " "), device: throttle.device)
            }
            if merged.devices != previous?.devices { try replaceDeviceProgram(with: merged.devices) }
        }

        /// `io.weight` (1 to 10000, default 100) for Docker's `--blkio-weight` (10 to 1000):
        /// runc's `ConvertBlkIOToIOWeightValue`.
        static func ioWeight(blkioWeight: UInt16) -> UInt64 {
            1 + (UInt64(blkioWeight) - 10) * 9999 / 990
        }

        /// Attaches a program for `rules`, then detaches the one attached before: while both
        /// are attached an access must pass both, so the cgroup is never more permissive than
        /// either list.
        private func replaceDeviceProgram(with rules: [DeviceRule]) throws(KernelError) {
            try descriptors.withLock { (descriptors) throws(KernelError) in
                guard let fd = descriptors.directory else { return }
                let program = try DeviceFilter.attach(rules, to: fd, path: directory)
                if let old = descriptors.deviceProgram { try DeviceFilter.detach(old, from: fd, path: directory) }
                descriptors.deviceProgram = program
            }
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

        /// Removes the directory, then closes the descriptors: a failed `rmdir` leaves the
        /// cgroup usable. The kernel detaches the device program with the directory.
        func remove() throws(KernelError) {
            try CgroupFile.removeDirectory(directory)
            descriptors.withLock { $0.close() }
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
