// Local test images, written as OCI image layouts with nothing but this file: a ustar writer for
// layer tars, gzip from the gzip CLI, SHA-256 from swift-crypto, and JSON by hand. The layouts
// are what any image tool reads, so Images tests import them and Containers tests can too.

import Crypto
import Foundation
import Glibc

/// Builders for OCI image layouts used as test images.
public enum ImageFixtures {
    /// A layer and whether it is gzip-compressed in the image.
    public struct Layer: Sendable {
        /// The tar's entries.
        public var entries: [TarEntry]
        /// Compress with gzip (`tar+gzip`) or store plain (`tar`).
        public var gzip: Bool

        /// Creates a layer description.
        public init(_ entries: [TarEntry], gzip: Bool = true) {
            self.entries = entries
            self.gzip = gzip
        }
    }

    /// One image of a layout: its layers, platform and runtime config.
    public struct Image: Sendable {
        /// Layers, base first.
        public var layers: [Layer]
        /// `os/arch[/variant]`.
        public var platform: String
        /// The `config` object of the image config, as JSON (e.g. `{"Cmd":["/bin/sh"]}`).
        public var runtimeConfigJSON: String

        /// Creates an image description.
        public init(layers: [Layer], platform: String = "linux/amd64", runtimeConfigJSON: String = #"{"Cmd":["/bin/sh"]}"#) {
            self.layers = layers
            self.platform = platform
            self.runtimeConfigJSON = runtimeConfigJSON
        }
    }

    /// The four-layer busybox image of the acceptance tests: busybox-static, links, a config
    /// file, then a layer that whites out one file and adds random data of `dataSize` bytes.
    public static func busyboxImage(dataSize: Int = 4 << 20, platform: String = "linux/amd64") throws -> Image {
        let busybox = try readBytes("/bin/busybox")
        // Incompressible, so the gzip layer is as big as asked; /dev/urandom is far quicker than
        // one random call per byte in a debug build.
        let data = try randomBytes(dataSize)
        return Image(
            layers: [
                Layer([.directory("bin"), .file("bin/busybox", bytes: busybox, mode: 0o755)]),
                Layer([.symlink("bin/sh", to: "busybox"), .symlink("bin/ls", to: "busybox"), .directory("etc")], gzip: false),
                Layer([.file("etc/motd", "hello from berth\n"), .file("etc/old", "old\n")]),
                Layer([.whiteout("etc/old"), .file("data.bin", bytes: data)]),
            ],
            platform: platform)
    }

    /// Writes an OCI image layout with one or more images.
    ///
    /// With one image, `index.json` names its manifest `refName`; with several, it names an
    /// index of all of them (a multi-platform image).
    ///
    /// - Parameters:
    ///   - images: The images.
    ///   - directory: The layout directory (created).
    ///   - refName: The `org.opencontainers.image.ref.name` of the top entry.
    /// - Returns: The digest of the top manifest or index.
    @discardableResult
    public static func writeLayout(_ images: [Image], at directory: String, refName: String) throws -> String {
        try makeDirectories(directory + "/blobs/sha256")
        try Data(#"{"imageLayoutVersion":"1.0.0"}"#.utf8).write(to: URL(fileURLWithPath: directory + "/oci-layout"))
        var manifests: [String] = []
        for image in images {
            var layerDescriptors: [String] = []
            var diffIDs: [String] = []
            for layer in image.layers {
                let tar = TarFixture.archive(layer.entries)
                diffIDs.append("\"sha256:\(hex(SHA256.hash(data: tar)))\"")
                let blob = layer.gzip ? try gzip(tar, scratch: directory) : tar
                let type = layer.gzip ? "application/vnd.oci.image.layer.v1.tar+gzip" : "application/vnd.oci.image.layer.v1.tar"
                layerDescriptors.append(try writeBlob(blob, type: type, in: directory).json)
            }
            let parts = image.platform.split(separator: "/").map(String.init)
            let variant = parts.count > 2 ? #","variant":"\#(parts[2])""# : ""
            let config = #"{"architecture":"\#(parts[1])","config":\#(image.runtimeConfigJSON),"created":"2024-01-01T00:00:00Z","history":[],"os":"\#(parts[0])","rootfs":{"diff_ids":[\#(diffIDs.joined(separator: ","))],"type":"layers"}\#(variant)}"#
            let configDescriptor = try writeBlob(Array(config.utf8), type: "application/vnd.oci.image.config.v1+json", in: directory)
            let manifest = #"{"config":\#(configDescriptor.json),"layers":[\#(layerDescriptors.joined(separator: ","))],"mediaType":"application/vnd.oci.image.manifest.v1+json","schemaVersion":2}"#
            let descriptor = try writeBlob(Array(manifest.utf8), type: "application/vnd.oci.image.manifest.v1+json", in: directory)
            let platform = #"{"architecture":"\#(parts[1])","os":"\#(parts[0])"\#(variant)}"#
            manifests.append(String(descriptor.json.dropLast()) + #","platform":\#(platform)}"#)
        }
        if manifests.count == 1, let only = manifests.first {
            try writeIndex(entry: only, refName: refName, in: directory)
            return try extractDigest(only)
        }
        let index = #"{"manifests":[\#(manifests.joined(separator: ","))],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}"#
        let top = try writeBlob(Array(index.utf8), type: "application/vnd.oci.image.index.v1+json", in: directory)
        try writeIndex(entry: top.json, refName: refName, in: directory)
        return top.digest
    }

    private static func writeIndex(entry: String, refName: String, in directory: String) throws {
        let annotated = String(entry.dropLast()) + #","annotations":{"org.opencontainers.image.ref.name":"\#(refName)"}}"#
        let index = #"{"manifests":[\#(annotated)],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}"#
        try Data(index.utf8).write(to: URL(fileURLWithPath: directory + "/index.json"))
    }

    private static func extractDigest(_ json: String) throws -> String {
        guard let range = json.range(of: #"sha256:[0-9a-f]{64}"#, options: .regularExpression) else {
            throw TestSupportError("no digest in \(json)")
        }
        return String(json[range])
    }

    private static func writeBlob(_ bytes: [UInt8], type: String, in directory: String) throws -> (json: String, digest: String) {
        let digest = "sha256:" + hex(SHA256.hash(data: bytes))
        try Data(bytes).write(to: URL(fileURLWithPath: "\(directory)/blobs/sha256/\(digest.dropFirst(7))"))
        return (#"{"digest":"\#(digest)","mediaType":"\#(type)","size":\#(bytes.count)}"#, digest)
    }

    private static func gzip(_ bytes: [UInt8], scratch: String) throws -> [UInt8] {
        let path = "\(scratch)/layer-\(UInt32.random(in: 0...UInt32.max)).tar"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let (status, output) = try runProgram(["gzip", "-n", "-f", path])
        guard status == 0 else { throw TestSupportError("gzip \(path): \(output)") }
        defer { unlink(path + ".gz") }
        return try readBytes(path + ".gz")
    }

    /// `count` bytes from `/dev/urandom`.
    public static func randomBytes(_ count: Int) throws -> [UInt8] {
        let fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw TestSupportError.errno("open /dev/urandom") }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress.map { $0 + done }, count - done) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw TestSupportError.errno("read /dev/urandom") }
            done += n
        }
        return bytes
    }

    static func hex(_ digest: some Sequence<UInt8>) -> String {
        digest.map { $0 < 16 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }
}
