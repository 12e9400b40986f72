import Glibc
import SystemPackage

/// A block device that an I/O limit applies to: by path, such as `/dev/vda`, resolved to its
/// device number when the limit is written, or by number (`major:minor`, such as `8:0`).
///
/// ```swift
/// let disk = try BlockDevice(parsing: "/dev/vda")
/// let same = BlockDevice(major: 254, minor: 0)
/// ```
public struct BlockDevice: Sendable, Hashable, Codable, CustomStringConvertible {
    enum Storage: Sendable, Hashable {
        case path(String)
        case number(major: UInt32, minor: UInt32)
    }

    let storage: Storage

    /// The device at `path` (a block device node, or a symbolic link to one).
    ///
    /// - Parameter path: An absolute path, such as `/dev/sda`.
    public init(path: String) { storage = .path(path) }

    /// The device with this number.
    ///
    /// - Parameters:
    ///   - major: The major number (`8` for SCSI disks).
    ///   - minor: The minor number.
    public init(major: UInt32, minor: UInt32) { storage = .number(major: major, minor: minor) }

    /// Parses a device as Docker's options name it: an absolute path, or `major:minor`.
    ///
    /// - Parameter text: `/dev/sda` or `8:0`.
    /// - Throws: ``KernelError`` with ``KernelError/Code/invalidArgument`` for anything else.
    public init(parsing text: String) throws(KernelError) {
        if text.hasPrefix("/") {
            self.init(path: text)
            return
        }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let major = UInt32(parts[0]), let minor = UInt32(parts[1]) else {
            throw KernelError(code: .invalidArgument, detail: "block device \"\(text)\": expected a path or major:minor")
        }
        self.init(major: major, minor: minor)
    }

    /// The path, or `major:minor`.
    public var description: String {
        switch storage {
        case .path(let path): path
        case .number(let major, let minor): "\(major):\(minor)"
        }
    }

    /// The device number as the cgroup files take it, `major:minor`.
    ///
    /// - Throws: ``KernelError`` with ``KernelError/Code/invalidArgument`` when the path does not
    ///   exist or is not a block device.
    func number() throws(KernelError) -> String {
        switch storage {
        case .number(let major, let minor):
            return "\(major):\(minor)"
        case .path(let path):
            var status = stat()
            guard stat(path, &status) == 0 else {
                throw KernelError(code: .invalidArgument, errno: Errno(rawValue: errno),
                                  detail: "block device \(path)")
            }
            guard status.st_mode & S_IFMT == S_IFBLK else {
                throw KernelError(code: .invalidArgument, detail: "block device \(path): not a block device")
            }
            return deviceNumber(status.st_rdev)
        }
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do {
            try self.init(parsing: text)
        } catch {
            throw DecodingError.dataCorrupted(
                DecodingError.Context(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// Rate limits on one block device (`docker run --device-read-bps` and its three siblings).
///
/// A `nil` rate leaves that limit as it is; `0` removes it.
///
/// cgroup v1 writes `blkio.throttle.{read,write}_{bps,iops}_device`; v2 one line of `io.max`.
public struct BlockIOThrottle: Sendable, Hashable, Codable {
    /// The device.
    public var device: BlockDevice
    /// Bytes per second read from it (`--device-read-bps`).
    public var readBytesPerSecond: UInt64?
    /// Bytes per second written to it (`--device-write-bps`).
    public var writeBytesPerSecond: UInt64?
    /// Read operations per second (`--device-read-iops`).
    public var readOperationsPerSecond: UInt64?
    /// Write operations per second (`--device-write-iops`).
    public var writeOperationsPerSecond: UInt64?

    /// Creates rate limits on a device.
    ///
    /// - Parameters:
    ///   - device: The device.
    ///   - readBytesPerSecond: Bytes per second read.
    ///   - writeBytesPerSecond: Bytes per second written.
    ///   - readOperationsPerSecond: Read operations per second.
    ///   - writeOperationsPerSecond: Write operations per second.
    public init(
        device: BlockDevice, readBytesPerSecond: UInt64? = nil, writeBytesPerSecond: UInt64? = nil,
        readOperationsPerSecond: UInt64? = nil, writeOperationsPerSecond: UInt64? = nil
    ) {
        self.device = device
        self.readBytesPerSecond = readBytesPerSecond
        self.writeBytesPerSecond = writeBytesPerSecond
        self.readOperationsPerSecond = readOperationsPerSecond
        self.writeOperationsPerSecond = writeOperationsPerSecond
    }

    /// The four rates with the names of their cgroup v1 file and v2 `io.max` key.
    var rates: [(rate: UInt64?, v1File: String, v2Key: String)] {
        [(readBytesPerSecond, "blkio.throttle.read_bps_device", "rbps"),
         (writeBytesPerSecond, "blkio.throttle.write_bps_device", "wbps"),
         (readOperationsPerSecond, "blkio.throttle.read_iops_device", "riops"),
         (writeOperationsPerSecond, "blkio.throttle.write_iops_device", "wiops")]
    }

    /// `self` with the rates `update` sets.
    func merging(_ update: BlockIOThrottle) -> BlockIOThrottle {
        BlockIOThrottle(
            device: device,
            readBytesPerSecond: update.readBytesPerSecond ?? readBytesPerSecond,
            writeBytesPerSecond: update.writeBytesPerSecond ?? writeBytesPerSecond,
            readOperationsPerSecond: update.readOperationsPerSecond ?? readOperationsPerSecond,
            writeOperationsPerSecond: update.writeOperationsPerSecond ?? writeOperationsPerSecond)
    }
}

extension [BlockIOThrottle] {
    /// These throttles with `update`'s rates applied device by device; a device only in
    /// `update` is added.
    func merging(_ update: [BlockIOThrottle]) -> [BlockIOThrottle] {
        var result = self
        for throttle in update {
            if let index = result.firstIndex(where: { $0.device == throttle.device }) {
                result[index] = result[index].merging(throttle)
            } else {
                result.append(throttle)
            }
        }
        return result
    }
}

/// A device number as `major:minor`, split as glibc's `gnu_dev_major` and `gnu_dev_minor` do
/// (`<bits/sysmacros.h>`; macros, which Swift does not import): 12 bits of major and 20 of
/// minor, spread over the 64-bit `dev_t`.
///
/// - Parameter device: A `dev_t`, such as `st_rdev`.
/// - Returns: `major:minor`, as the kernel's cgroup files write it.
func deviceNumber(_ device: dev_t) -> String {
    let major = ((device >> 8) & 0xfff) | ((device >> 32) & ~0xfff)
    let minor = (device & 0xff) | ((device >> 12) & ~0xff)
    return "\(major):\(minor)"
}
