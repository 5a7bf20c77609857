/**
 * Builds the FileDescriptorSet a job type may register with its message names. With it the server
 * checks that payloads really decode as those messages (at Submit and at completion), and can render
 * them as JSON for Connect/JSON clients.
 */
import { create, type DescFile, type DescMessage } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema, type FileDescriptorSet } from "@bufbuild/protobuf/wkt";

/** The files defining `schemas`, with every file they import (dependencies first), or undefined for none. */
export function descriptorSetOf(schemas: readonly DescMessage[]): FileDescriptorSet | undefined {
  if (schemas.length === 0) return undefined;
  const ordered: DescFile[] = [];
  const seen = new Set<string>();
  // Depth-first, dependencies before dependants: the server builds a registry that needs all of them
  // (a set missing google/protobuf/timestamp.proto, say, is rejected as incomplete).
  const visit = (file: DescFile): void => {
    if (seen.has(file.proto.name)) return;
    seen.add(file.proto.name);
    for (const dependency of file.dependencies) visit(dependency);
    ordered.push(file);
  };
  for (const schema of schemas) visit(schema.file);
  return create(FileDescriptorSetSchema, { file: ordered.map((file) => file.proto) });
}
