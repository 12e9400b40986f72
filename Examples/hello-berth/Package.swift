// swift-tools-version:6.1
//
// The smallest program that embeds Berth, depending on it the way a user's package does:
//
//     .package(url: "https://github.com/…/berth", from: "0.1.0")
//
// Here by path, while developing; `make check-consumer` (part of `make test`) builds it against
// a tagged clone of this repository with `from:`, as a new user would.
import PackageDescription

let package = Package(
    name: "hello-berth",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "Berth", path: "../.."),
    ],
    targets: [
        .executableTarget(
            name: "hello-berth",
            dependencies: [.product(name: "Containers", package: "Berth")]
        ),
    ]
)

// The code of ContainerTesting's articles, as a dependent's tests (apart from the targets above,
// which are the README's block verbatim).
package.targets.append(contentsOf: [
        .testTarget(
            name: "AppTests",
            dependencies: [
                .product(name: "Containers", package: "Berth"),
                .product(name: "ContainerTesting", package: "Berth"),
            ]
        ),
])
