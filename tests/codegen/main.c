/* A C client made by gdbus-codegen from the installed introspection XML
 * (packaging/dbus/org.inferd.Inferd1.xml); tests/tests/introspection.rs builds and runs it.
 * Usage: main BUS_ADDRESS */
#include <stdio.h>

#include "inferd-generated.h"

static int fail(const char *what, GError *err) {
  fprintf(stderr, "%s: %s\n", what, err ? err->message : "?");
  return 1;
}

int main(int argc, char **argv) {
  GError *err = NULL;
  if (argc != 2) return 2;
  GDBusConnection *conn = g_dbus_connection_new_for_address_sync(
      argv[1],
      G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT | G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
      NULL, NULL, &err);
  if (!conn) return fail("connect", err);

  InferdInferd1 *svc = inferd_inferd1_proxy_new_sync(
      conn, G_DBUS_PROXY_FLAGS_NONE, "org.inferd.Inferd1", "/org/inferd/Inferd1", NULL, &err);
  if (!svc) return fail("proxy", err);
  printf("version %s\n", inferd_inferd1_get_version(svc));

  const gchar *texts[] = {"hello", NULL};
  GVariant *vectors = NULL;
  if (!inferd_inferd1_call_embed_sync(svc, "minilm", texts, g_variant_new("a{sv}", NULL),
                                      &vectors, NULL, &err))
    return fail("Embed", err);
  GVariant *first = g_variant_get_child_value(vectors, 0);
  gsize n = 0;
  const gdouble *v = g_variant_get_fixed_array(first, &n, sizeof(gdouble));
  printf("dims %zu\nfirst %.9f\n", n, v[0]);

  InferdInferd1Model *model = inferd_inferd1_model_proxy_new_sync(
      conn, G_DBUS_PROXY_FLAGS_NONE, "org.inferd.Inferd1", "/org/inferd/Inferd1/models/minilm",
      NULL, &err);
  if (!model) return fail("model proxy", err);
  printf("state %s\nkind %s\n", inferd_inferd1_model_get_state(model),
         inferd_inferd1_model_get_kind(model));

  /* Errors arrive under their D-Bus names. */
  if (inferd_inferd1_call_embed_sync(svc, "nosuch", texts, g_variant_new("a{sv}", NULL), &vectors,
                                     NULL, &err))
    return fail("Embed of an unknown model succeeded", NULL);
  gchar *remote = g_dbus_error_get_remote_error(err);
  printf("error %s\n", remote);
  return 0;
}
