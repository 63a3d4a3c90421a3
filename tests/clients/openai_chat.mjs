// The openai Node SDK's chat.completions against Plugsky: one answer, or one stream with usage.
import OpenAI from "openai";
import { run } from "./config.mjs";

const MESSAGES = [{ role: "user", content: "What is 2+2?" }];

function client({ baseURL, apiKey }) {
  return new OpenAI({ baseURL, apiKey, maxRetries: 0 });
}

async function create(settings) {
  const { data, request_id } = await client(settings)
    .chat.completions.create({ model: settings.model, messages: MESSAGES, max_tokens: 32, temperature: 0 })
    .withResponse();
  return { id: data.id, requestId: request_id, text: data.choices[0].message.content, usage: data.usage };
}

async function stream(settings) {
  const { data, request_id } = await client(settings)
    .chat.completions.create({
      model: settings.model, messages: MESSAGES, max_tokens: 32, temperature: 0,
      stream: true, stream_options: { include_usage: true },
    })
    .withResponse();
  const chunks = [];
  for await (const chunk of data) chunks.push(chunk);
  const text = chunks.map((chunk) => chunk.choices[0]?.delta?.content ?? "").join("");
  const ids = [...new Set(chunks.map((chunk) => chunk.id))];
  const finishReasons = chunks.flatMap((chunk) => chunk.choices).map((choice) => choice.finish_reason).filter(Boolean);
  const last = chunks.at(-1);
  return { ids, requestId: request_id, text, finishReasons, lastChoices: last.choices.length, usage: last.usage };
}

await run({ create, stream });
